-- Agents, their phones and skills, and their desktop sessions.

CREATE TABLE IF NOT EXISTS agents (
    id             bigserial PRIMARY KEY,
    name           text NOT NULL UNIQUE,
    display_name   text NOT NULL DEFAULT '',
    password_hash  text NOT NULL,
    sip_endpoint   text NOT NULL UNIQUE,
    sip_secret     text NOT NULL,
    -- {"lang:pl": 5, "group:roads": 3}: proficiency 1-5 per skill
    skills         jsonb NOT NULL DEFAULT '{}'::jsonb,
    role           text NOT NULL DEFAULT 'agent',
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS agent_sessions (
    token_hash   text PRIMARY KEY,
    agent_id     bigint NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_sessions_agent_idx ON agent_sessions (agent_id);
