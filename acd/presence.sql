-- What the ACD last said of each agent, so a restart brings logged-in agents back
-- (acd/presence.py is the one writer; the ACD engine in memory stays the truth while it runs).

CREATE TABLE IF NOT EXISTS agent_presence (
    agent         text PRIMARY KEY,  -- the account name: the ACD's agent id
    state         text NOT NULL,     -- logged_out, ready, ringing, on_call, wrap_up, paused
    pause_reason  text,
    changed_at    timestamptz NOT NULL DEFAULT now()
);
