"""The link to Asterisk: running our own instance (asterisk) and its manager interface (ami)."""
