"""Simulated residents and agents: sipp callers that press keys through the IVR and pyVoIP
phones that answer, for the demo (`cityline demo`) and the end-to-end tests."""
