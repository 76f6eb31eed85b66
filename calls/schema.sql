-- The call-record journal's idempotency key (calls/facts.py): an event replayed after a
-- database outage or a crash is stored once. The tables themselves are in cases/schema.sql.
ALTER TABLE call_events ADD COLUMN IF NOT EXISTS fact_id uuid;
CREATE UNIQUE INDEX IF NOT EXISTS call_events_fact_idx ON call_events (fact_id);
