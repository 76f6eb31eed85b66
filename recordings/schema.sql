-- Recordings deleted, by the retention sweep or by hand: who or what, when, why. Rows stay after
-- the file is gone (and would outlive the call record): no foreign key on purpose.
CREATE TABLE IF NOT EXISTS recording_audit (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    call_id         uuid NOT NULL,
    action          text NOT NULL,           -- deleted
    actor           text NOT NULL,           -- retention (the sweep), or who asked (admin)
    reason          text NOT NULL,           -- retention_expired, orphan, or the reason given
    retention_kind  text,                    -- answered, case: the period that ran out
    retention_days  integer,
    recorded_at     timestamptz,             -- the end of the call: the period counts from it
    file_found      boolean NOT NULL,        -- false: the file was gone already
    bytes           bigint
);
CREATE INDEX IF NOT EXISTS recording_audit_call_idx ON recording_audit (call_id, at);
CREATE INDEX IF NOT EXISTS recording_audit_at_idx ON recording_audit (at DESC);

-- The retention sweep looks for stored recordings by the end of their call.
CREATE INDEX IF NOT EXISTS calls_recorded_idx ON calls ((coalesce(ended_at, arrived_at)))
    WHERE recording_path IS NOT NULL;
