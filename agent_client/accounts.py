"""Agent accounts in PostgreSQL: passwords, roles, skills, SIP phones and log-in sessions."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import structlog

from acd.devices import WEB_PHONE_SUFFIX
from cases.catalogue import Catalogue
from db.pool import utcnow

log = structlog.get_logger(__name__)

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")
ROLES = ("agent", "supervisor")
MIN_PASSWORD_LENGTH = 8
# scrypt at n=2**14 costs ~50 ms: slow for guessing, fine for a log-in.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
# Password checks in worker threads at once (each takes ~50 ms of a core and 16 MB): a burst of
# log-ins queues here instead of filling the default executor other work shares.
HASHING_AT_ONCE = 2


def sip_endpoint_name() -> str:
    """An agent's SIP user name says nothing of the agent: names cannot be enumerated over SIP
    (a SIP scanner learns only that some endpoint exists, never whose)."""
    return "ep" + secrets.token_hex(8)


class AgentError(ValueError):
    """A request about agents that cannot be done as asked (the message says why)."""


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def session_key(token: str) -> str:
    """What a session is known by (in PostgreSQL and on desktop connections): never the token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Agent:
    id: int
    name: str
    display_name: str
    sip_endpoint: str
    sip_secret: str
    skills: dict[str, int]
    role: str

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "display_name": self.display_name,
            "sip_endpoint": self.sip_endpoint,
            "skills": self.skills,
            "role": self.role,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Agent:
        return cls(
            id=row["id"],
            name=row["name"],
            display_name=row["display_name"],
            sip_endpoint=row["sip_endpoint"],
            sip_secret=row["sip_secret"],
            skills=dict(row["skills"]),
            role=row["role"],
        )


class AgentDirectory:
    """Agent accounts in PostgreSQL, with an in-memory copy for the hot path (endpoint look-ups)."""

    def __init__(
        self, pool: asyncpg.Pool, catalogue: Catalogue, *, session_hours: int = 12
    ) -> None:
        self._pool = pool
        self._catalogue = catalogue
        self._session_lifetime = timedelta(hours=session_hours)
        self._hashing = asyncio.Semaphore(HASHING_AT_ONCE)
        self._stand_in: str | None = None
        self.by_name: dict[str, Agent] = {}

    @property
    def catalogue(self) -> Catalogue:
        return self._catalogue

    async def load(self) -> list[Agent]:
        await self._stand_in_hash()  # made now, so the first unknown name costs no more
        rows = await self._pool.fetch("SELECT * FROM agents ORDER BY id")
        self.by_name = {row["name"]: Agent.from_row(row) for row in rows}
        return list(self.by_name.values())

    def validate_skills(self, skills: Any) -> dict[str, int]:
        if not isinstance(skills, dict) or not skills:
            raise AgentError('skills must be an object like {"lang:pl": 5, "group:roads": 3}')
        known = {f"lang:{c}" for c in self._catalogue.languages} | {
            f"group:{c}" for c in self._catalogue.groups
        }
        clean: dict[str, int] = {}
        for skill, level in skills.items():
            if skill not in known:
                raise AgentError(f"unknown skill {skill!r}; known: {sorted(known)}")
            if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 5:
                raise AgentError(f"proficiency of {skill!r} must be a whole number from 1 to 5")
            clean[skill] = level
        if not any(s.startswith("lang:") for s in clean):
            raise AgentError("an agent needs at least one language skill")
        return clean

    async def create(
        self,
        *,
        name: str,
        password: str,
        skills: Any,
        display_name: str = "",
        role: str = "agent",
    ) -> Agent:
        if not NAME_PATTERN.match(name):
            raise AgentError("name: 1-32 of a-z 0-9 _ . -, starting with a letter or digit")
        if name.endswith(WEB_PHONE_SUFFIX):  # "<endpoint>-web" is another agent's browser phone
            raise AgentError(f"name: must not end in {WEB_PHONE_SUFFIX!r}")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AgentError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
        if role not in ROLES:
            raise AgentError(f"role must be one of {ROLES}")
        clean_skills = self.validate_skills(skills) if role == "agent" else {}
        password_hash = await asyncio.to_thread(hash_password, password)
        try:
            row = await self._pool.fetchrow(
                "INSERT INTO agents (name, display_name, password_hash, sip_endpoint, sip_secret,"
                " skills, role) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                name,
                display_name or name,
                password_hash,
                sip_endpoint_name(),
                secrets.token_urlsafe(18),
                clean_skills,
                role,
            )
        except asyncpg.UniqueViolationError as exc:
            raise AgentError(f"an agent named {name!r} exists already") from exc
        agent = Agent.from_row(row)
        self.by_name[agent.name] = agent
        log.info("agent_created", agent=name, role=role, skills=clean_skills)
        return agent

    async def check_password(self, name: str, password: str) -> Agent | None:
        """The account if the password is right; None for a wrong name or password.

        Known or not, a name costs one scrypt of the same cost, in a worker thread (an unknown
        one is checked against a stand-in hash): the answer's timing does not tell which names
        exist, and guesses never stall the event loop. At most HASHING_AT_ONCE run together.
        """
        row = await self._pool.fetchrow("SELECT * FROM agents WHERE name = $1", name)
        stored = row["password_hash"] if row else await self._stand_in_hash()
        async with self._hashing:
            ok = await asyncio.to_thread(verify_password, password, stored)
        if row is None or not ok:
            return None
        return Agent.from_row(row)

    async def _stand_in_hash(self) -> str:
        """A hash of a password nobody knows, made once (in a thread) at the accounts' cost."""
        if self._stand_in is None:
            self._stand_in = await asyncio.to_thread(hash_password, secrets.token_urlsafe(16))
        return self._stand_in

    async def open_session(self, agent: Agent) -> str:
        """A new session for the agent, ending any older one in the same transaction.

        The agent's row is locked first, so two log-ins at once leave exactly one session: the
        later one's.
        """
        token = secrets.token_urlsafe(32)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM agents WHERE id = $1 FOR UPDATE", agent.id)
            await conn.execute("DELETE FROM agent_sessions WHERE agent_id = $1", agent.id)
            await conn.execute(
                "INSERT INTO agent_sessions (token_hash, agent_id, expires_at) VALUES ($1, $2, $3)",
                session_key(token),
                agent.id,
                utcnow() + self._session_lifetime,
            )
        return token

    async def end_sessions_of(self, agent: Agent) -> int:
        """End every session of the agent; how many there were."""
        result = await self._pool.execute(
            "DELETE FROM agent_sessions WHERE agent_id = $1", agent.id
        )
        return int(result.split()[-1])

    async def names_with_sessions(self) -> set[str]:
        """Accounts with a session that has not expired."""
        rows = await self._pool.fetch(
            "SELECT DISTINCT a.name FROM agent_sessions s JOIN agents a ON a.id = s.agent_id"
            " WHERE s.expires_at > now()"
        )
        return {row["name"] for row in rows}

    async def agent_for_token(self, token: str) -> Agent | None:
        row = await self._pool.fetchrow(
            "SELECT a.* FROM agent_sessions s JOIN agents a ON a.id = s.agent_id"
            " WHERE s.token_hash = $1 AND s.expires_at > now()",
            session_key(token),
        )
        return Agent.from_row(row) if row else None

    async def end_session(self, token: str) -> None:
        await self._pool.execute(
            "DELETE FROM agent_sessions WHERE token_hash = $1", session_key(token)
        )

    def endpoint_of(self, agent_id: str) -> str | None:
        agent = self.by_name.get(agent_id)
        return agent.sip_endpoint if agent else None

    def agent_for_endpoint(self, endpoint: str) -> str | None:
        return next((a.name for a in self.by_name.values() if a.sip_endpoint == endpoint), None)
