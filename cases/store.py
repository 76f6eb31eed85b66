"""Cases in PostgreSQL. Thin: SQL in, plain dicts out."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import asyncpg

from cases.catalogue import Catalogue
from cases.services import CatalogueError, Service, ServiceCatalogue, check_attributes
from db.pool import utcnow


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


# Words that say nothing about which street.
_ADDRESS_NOISE = frozenset(
    "ul ulica ulicy ulicę al aleja alei pl plac placu os osiedle street st road rd avenue ave"
    " the near przy obok".split()
)


def street_words(address: str) -> list[str]:
    """The words that name the place, cut to a stem so Polish cases still match:
    "ul. Marszałkowskiej 5" and "Marszałkowska" both give "marszałkow"."""
    words = re.findall(r"[^\W\d_]{3,}", address.lower())
    return [w[: max(5, len(w) - 3)] for w in words if w not in _ADDRESS_NOISE][:3]


class CaseError(ValueError):
    """A case that cannot be stored as asked (unknown call, unknown group...)."""


def _row(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record is not None else None


class CaseStore:
    def __init__(
        self, pool: asyncpg.Pool, catalogue: Catalogue, services: ServiceCatalogue | None = None
    ) -> None:
        self._pool = pool
        self._catalogue = catalogue
        self._services = services

    async def create_case(
        self,
        *,
        call_id: uuid.UUID | None,
        service_group: str = "",
        description: str,
        address: str = "",
        created_by: str | None = None,
        caller_number: str | None = None,
        service_code: str = "",
        location: tuple[float, float] | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        service: Service | None = None
        if service_code:
            service = self._services.get(service_code) if self._services else None
            if service is None:
                raise CaseError(f"unknown service {service_code!r}")
            if service_group and service_group != service.group:
                raise CaseError(f"service {service_code!r} is in group {service.group!r}")
            if service.needs_address and not address and location is None:
                raise CaseError(f"{service_code}: an address or a location is required")
            service_group = service.group
            try:
                fields = check_attributes(service, attributes or {})
            except CatalogueError as exc:
                raise CaseError(str(exc)) from exc
        elif attributes:
            raise CaseError("attributes need a service_code")
        group = self._catalogue.groups.get(service_group)
        if group is None:
            raise CaseError(f"unknown service group {service_group!r}")
        async with self._pool.acquire() as conn, conn.transaction():
            if call_id is not None:
                call = await conn.fetchrow("SELECT caller_number FROM calls WHERE id = $1", call_id)
                if call is None:
                    raise CaseError(f"no call {call_id}")
                caller_number = call["caller_number"]
            created_at = utcnow()
            hours = service.response_hours if service else group.response_hours
            row = await conn.fetchrow(
                "INSERT INTO cases (call_id, caller_number, service_group, department,"
                " description, address, created_by, created_at, due_at, service_code, lat, lon,"
                " attributes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
                " RETURNING *",
                call_id,
                caller_number or "",
                group.code,
                service.department if service else group.department,
                description,
                address,
                created_by,
                created_at,
                created_at + timedelta(hours=hours),
                service_code or None,
                location[0] if location else None,
                location[1] if location else None,
                fields,
            )
        return dict(row)

    async def link_call(self, case_id: int, call_id: uuid.UUID, linked_by: str) -> dict[str, Any]:
        """A call about a case that exists (a duplicate report): recorded on that case."""
        async with self._pool.acquire() as conn, conn.transaction():
            case = await conn.fetchrow("SELECT * FROM cases WHERE id = $1", case_id)
            if case is None:
                raise CaseError(f"no case {case_id}")
            if await conn.fetchval("SELECT 1 FROM calls WHERE id = $1", call_id) is None:
                raise CaseError(f"no call {call_id}")
            await conn.execute(
                "INSERT INTO case_calls (case_id, call_id, linked_by) VALUES ($1, $2, $3)"
                " ON CONFLICT DO NOTHING",
                case_id,
                call_id,
                linked_by,
            )
        return dict(case)

    async def possible_duplicates(
        self,
        service_code: str,
        *,
        address: str = "",
        location: tuple[float, float] | None = None,
        days: int = 30,
        radius_m: float = 300.0,
        limit: int = 5,
    ) -> list[dict[str, Any]]:
        """Open cases of the same service near this one: the resident may report a known fault.

        Near means within `radius_m` when both have a location (bounding box, then haversine:
        no PostGIS needed), else the same street words in the address.
        """
        if not service_code or (location is None and not street_words(address)):
            return []
        since = utcnow() - timedelta(days=days)
        columns = "id, service_code, description, address, status, created_at, due_at, lat, lon"
        if location is not None:
            lat, lon = location
            dlat = radius_m / 111_320.0
            dlon = dlat / max(math.cos(math.radians(lat)), 0.01)
            rows = await self._pool.fetch(
                f"SELECT {columns} FROM cases WHERE status = 'open' AND service_code = $1"
                " AND created_at > $2 AND lat BETWEEN $3 AND $4 AND lon BETWEEN $5 AND $6"
                " ORDER BY created_at DESC LIMIT 50",
                service_code,
                since,
                lat - dlat,
                lat + dlat,
                lon - dlon,
                lon + dlon,
            )
            near = [
                dict(r, distance_m=round(haversine_m(lat, lon, r["lat"], r["lon"]))) for r in rows
            ]
            return sorted(
                (r for r in near if r["distance_m"] <= radius_m), key=lambda r: r["distance_m"]
            )[:limit]
        patterns = [f"%{word}%" for word in street_words(address)]
        rows = await self._pool.fetch(
            f"SELECT {columns} FROM cases WHERE status = 'open' AND service_code = $1"
            " AND created_at > $2 AND address ILIKE ALL($3::text[])"
            " ORDER BY created_at DESC LIMIT $4",
            service_code,
            since,
            patterns,
            limit,
        )
        return [dict(r) for r in rows]

    async def get_case(self, case_id: int) -> dict[str, Any] | None:
        return _row(await self._pool.fetchrow("SELECT * FROM cases WHERE id = $1", case_id))

    async def linked_by(self, case_id: int, agent: str) -> bool:
        """Whether the agent linked one of their calls to this case."""
        return bool(
            await self._pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM case_calls WHERE case_id = $1 AND linked_by = $2)",
                case_id,
                agent,
            )
        )

    async def cases_for_call(self, call_id: uuid.UUID) -> list[dict[str, Any]]:
        """Cases opened on the call, and existing cases the call was linked to."""
        rows = await self._pool.fetch(
            "SELECT *, false AS linked FROM cases WHERE call_id = $1 UNION ALL"
            " SELECT c.*, true AS linked FROM cases c JOIN case_calls l ON l.case_id = c.id"
            " WHERE l.call_id = $1 ORDER BY id",
            call_id,
        )
        return [dict(r) for r in rows]

    async def caller_history(self, caller_number: str, limit: int = 10) -> list[dict[str, Any]]:
        """The caller's earlier cases, newest first: what the agent sees in the screen-pop."""
        if not caller_number:
            return []
        rows = await self._pool.fetch(
            "SELECT id, service_group, service_code, department, description, address, status,"
            " created_at, due_at FROM cases WHERE caller_number = $1"
            " ORDER BY created_at DESC LIMIT $2",
            caller_number,
            limit,
        )
        return [dict(r) for r in rows]
