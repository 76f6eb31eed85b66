-- Callbacks residents asked for and have not had yet, so a restart does not lose them
-- (calls/callbacks.py, the dialer, is the one writer; a row goes when the callback is over).

CREATE TABLE IF NOT EXISTS pending_callbacks (
    call_id        uuid PRIMARY KEY,
    number         text NOT NULL,
    language       text NOT NULL,
    service_group  text,                       -- NULL: the resident chose no group
    queued_at      double precision NOT NULL,  -- when the call was queued (the ACD's clock)
    pop            jsonb NOT NULL DEFAULT '{}'::jsonb,  -- what the agent's desk shows
    attempts       integer NOT NULL DEFAULT 0, -- agents rung for it so far
    failures       integer NOT NULL DEFAULT 0, -- attempts the resident was not reached
    requested_at   timestamptz NOT NULL DEFAULT now()
);
