-- The service catalogue (cases/services.json) as the server last synced it. Idempotent.
-- Rows are never deleted: calls and cases keep referring to a service after it is withdrawn,
-- so a service dropped from the file is only marked inactive.

CREATE TABLE IF NOT EXISTS services (
    service_code   text PRIMARY KEY,
    service_group  text NOT NULL,
    department     text NOT NULL,
    -- Per language ({"pl": ..., "en": ...}); keywords and phrases hold lists.
    names          jsonb NOT NULL,
    descriptions   jsonb NOT NULL,
    keywords       jsonb NOT NULL,
    phrases        jsonb NOT NULL,
    response_hours integer NOT NULL CHECK (response_hours > 0),
    -- The answer the IVR gives itself, per language; NULL for services that need a case.
    ivr_answer     jsonb,
    needs_address  boolean NOT NULL DEFAULT false,
    -- Open311 attributes, in the shape of services.json (texts per language).
    attributes     jsonb NOT NULL DEFAULT '[]'::jsonb,
    active         boolean NOT NULL DEFAULT true,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS services_group_idx ON services (service_group, service_code);
