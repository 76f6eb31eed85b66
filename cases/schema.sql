-- Calls and the cases agents record for them. Idempotent: applied again when it changes.

CREATE TABLE IF NOT EXISTS calls (
    id               uuid PRIMARY KEY,
    asterisk_uniqueid text NOT NULL,
    caller_number    text NOT NULL DEFAULT '',
    language         text,
    service_group    text,
    arrived_at       timestamptz NOT NULL,
    ivr_ended_at     timestamptz,
    queued_at        timestamptz,
    offered_at       timestamptz,
    answered_at      timestamptz,
    ended_at         timestamptz,
    -- answered, abandoned_ivr, abandoned_queue, abandoned_ringing, fallback, failed
    outcome          text,
    agent            text,
    offers           integer NOT NULL DEFAULT 0,
    wait_seconds     double precision,
    answered_within_target boolean,
    recording_path   text
);
-- What the speech IVR understood: the catalogue service and the resident's own words.
ALTER TABLE calls ADD COLUMN IF NOT EXISTS service_code text;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS transcript text;

CREATE INDEX IF NOT EXISTS calls_caller_idx ON calls (caller_number, arrived_at DESC);
CREATE INDEX IF NOT EXISTS calls_arrived_idx ON calls (arrived_at DESC);
CREATE INDEX IF NOT EXISTS calls_uniqueid_idx ON calls (asterisk_uniqueid);

-- Every step of a call, in order: the record above is the summary, this is the trail.
CREATE TABLE IF NOT EXISTS call_events (
    id       bigserial PRIMARY KEY,
    call_id  uuid NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    at       timestamptz NOT NULL DEFAULT now(),
    kind     text NOT NULL,
    detail   jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS call_events_call_idx ON call_events (call_id, id);

CREATE TABLE IF NOT EXISTS cases (
    id             bigserial PRIMARY KEY,
    call_id        uuid REFERENCES calls (id),
    caller_number  text NOT NULL DEFAULT '',
    service_group  text NOT NULL,
    department     text NOT NULL,
    description    text NOT NULL,
    address        text NOT NULL DEFAULT '',
    status         text NOT NULL DEFAULT 'open',
    created_by     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    due_at         timestamptz
);
-- What the agent's form records beyond the group: the catalogue service, where, its own fields.
ALTER TABLE cases ADD COLUMN IF NOT EXISTS service_code text;
ALTER TABLE cases ADD COLUMN IF NOT EXISTS lat double precision;
ALTER TABLE cases ADD COLUMN IF NOT EXISTS lon double precision;
ALTER TABLE cases ADD COLUMN IF NOT EXISTS attributes jsonb NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS cases_caller_idx ON cases (caller_number, created_at DESC);
-- Possible duplicates: open cases of one service, newest first.
CREATE INDEX IF NOT EXISTS cases_open_service_idx ON cases (service_code, created_at DESC)
    WHERE status = 'open';
CREATE INDEX IF NOT EXISTS cases_call_idx ON cases (call_id);

-- A call about a case that exists already (a duplicate report): linked instead of a new case.
CREATE TABLE IF NOT EXISTS case_calls (
    case_id    bigint NOT NULL REFERENCES cases (id),
    call_id    uuid NOT NULL REFERENCES calls (id),
    linked_by  text,
    linked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, call_id)
);
CREATE INDEX IF NOT EXISTS case_calls_call_idx ON case_calls (call_id);
