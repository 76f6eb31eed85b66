"""The service catalogue in PostgreSQL: synced from services.json, read by the Open311 API.

The JSON file stays the source of truth; the table is what the running server offers, so other
processes (reports, the Open311 endpoints) need not parse the file. jsonb travels as text both
ways (``$n::text::jsonb`` in, ``col::text`` out), so these functions work on any asyncpg pool,
with or without the json codecs of ``cases.db.create_pool``.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from cases.services import Attribute, Service, ServiceCatalogue

_COLUMNS = """service_code, service_group, department, names::text AS names,
    descriptions::text AS descriptions, keywords::text AS keywords, phrases::text AS phrases,
    response_hours, ivr_answer::text AS ivr_answer, needs_address,
    attributes::text AS attributes, active, updated_at"""

_JSON_COLUMNS = ("names", "descriptions", "keywords", "phrases", "ivr_answer", "attributes")

# One statement for the whole catalogue. An unchanged row is left alone, so updated_at says
# when a service last changed, not when the server last started.
_UPSERT = """
INSERT INTO services AS s (service_code, service_group, department, names, descriptions,
                           keywords, phrases, response_hours, ivr_answer, needs_address,
                           attributes, active, updated_at)
SELECT r.service_code, r.service_group, r.department, r.names, r.descriptions, r.keywords,
       r.phrases, r.response_hours, r.ivr_answer, r.needs_address, r.attributes, true, now()
FROM jsonb_to_recordset($1::text::jsonb) AS r(
    service_code text, service_group text, department text, names jsonb, descriptions jsonb,
    keywords jsonb, phrases jsonb, response_hours integer, ivr_answer jsonb,
    needs_address boolean, attributes jsonb)
ON CONFLICT (service_code) DO UPDATE SET
    service_group = EXCLUDED.service_group,
    department = EXCLUDED.department,
    names = EXCLUDED.names,
    descriptions = EXCLUDED.descriptions,
    keywords = EXCLUDED.keywords,
    phrases = EXCLUDED.phrases,
    response_hours = EXCLUDED.response_hours,
    ivr_answer = EXCLUDED.ivr_answer,
    needs_address = EXCLUDED.needs_address,
    attributes = EXCLUDED.attributes,
    active = true,
    updated_at = now()
WHERE (s.service_group, s.department, s.names, s.descriptions, s.keywords, s.phrases,
       s.response_hours, s.ivr_answer, s.needs_address, s.attributes, s.active)
   IS DISTINCT FROM
      (EXCLUDED.service_group, EXCLUDED.department, EXCLUDED.names, EXCLUDED.descriptions,
       EXCLUDED.keywords, EXCLUDED.phrases, EXCLUDED.response_hours, EXCLUDED.ivr_answer,
       EXCLUDED.needs_address, EXCLUDED.attributes, true)
"""

_DEACTIVATE = """
UPDATE services SET active = false, updated_at = now()
WHERE active AND NOT (service_code = ANY($1::text[]))
"""


def _attribute_json(a: Attribute) -> dict[str, Any]:
    item: dict[str, Any] = {
        "code": a.code,
        "datatype": a.datatype,
        "required": a.required,
        "order": a.order,
        "variable": a.variable,
        "description": a.description,
    }
    if a.values:
        item["values"] = [{"key": key, "name": names} for key, names in a.values]
    return item


def service_json(service: Service) -> dict[str, Any]:
    """A service as one row of the table, jsonb columns as plain JSON values."""
    return {
        "service_code": service.code,
        "service_group": service.group,
        "department": service.department,
        "names": service.name,
        "descriptions": service.description,
        "keywords": {lang: list(words) for lang, words in service.keywords.items()},
        "phrases": {lang: list(texts) for lang, texts in service.phrases.items()},
        "response_hours": service.response_hours,
        "ivr_answer": service.ivr_answer,
        "needs_address": service.needs_address,
        "attributes": [_attribute_json(a) for a in service.attributes],
    }


def row_to_service(row: dict[str, Any]) -> Service:
    """A row of list_services / get_service back as a catalogue Service."""
    attributes = tuple(
        Attribute(
            code=a["code"],
            datatype=a["datatype"],
            required=bool(a["required"]),
            order=int(a["order"]),
            description=dict(a["description"]),
            values=tuple((str(v["key"]), dict(v["name"])) for v in a.get("values", [])),
            variable=bool(a.get("variable", True)),
        )
        for a in row["attributes"]
    )
    return Service(
        code=row["service_code"],
        group=row["service_group"],
        department=row["department"],
        name=dict(row["names"]),
        description=dict(row["descriptions"]),
        keywords={lang: tuple(words) for lang, words in row["keywords"].items()},
        phrases={lang: tuple(texts) for lang, texts in row["phrases"].items()},
        response_hours=row["response_hours"],
        ivr_answer=dict(row["ivr_answer"]) if row["ivr_answer"] is not None else None,
        needs_address=row["needs_address"],
        attributes=attributes,
    )


def _decode(record: asyncpg.Record) -> dict[str, Any]:
    row = dict(record)
    for column in _JSON_COLUMNS:
        if row[column] is not None:
            row[column] = json.loads(row[column])
    return row


async def sync_services(pool: asyncpg.Pool, catalogue: ServiceCatalogue) -> int:
    """Make the table match the catalogue in one transaction; return the number of services.

    Services in the catalogue are inserted or updated (and reactivated); services no longer in
    it are marked inactive, never deleted, since calls and cases still name them.
    """
    rows = [service_json(s) for s in catalogue]
    async with pool.acquire() as conn, conn.transaction():
        # Self-conflicting but compatible with reads: two servers starting together sync one
        # after the other instead of interleaving their deactivations.
        await conn.execute("LOCK TABLE services IN SHARE ROW EXCLUSIVE MODE")
        await conn.execute(_UPSERT, json.dumps(rows, ensure_ascii=False))
        await conn.execute(_DEACTIVATE, [r["service_code"] for r in rows])
    return len(rows)


async def list_services(pool: asyncpg.Pool, active_only: bool = True) -> list[dict[str, Any]]:
    """Every service row (jsonb decoded, with active and updated_at), by group then code."""
    records = await pool.fetch(
        f"SELECT {_COLUMNS} FROM services WHERE active OR NOT $1"
        " ORDER BY service_group, service_code",
        active_only,
    )
    return [_decode(r) for r in records]


async def get_service(
    pool: asyncpg.Pool, code: str, active_only: bool = True
) -> dict[str, Any] | None:
    record = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM services WHERE service_code = $1 AND (active OR NOT $2)",
        code,
        active_only,
    )
    return _decode(record) if record is not None else None
