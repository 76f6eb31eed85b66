from __future__ import annotations

import pytest

from db.pool import redact, with_database


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        (
            "postgresql://postgres@127.0.0.1:5432/postgres",
            "postgresql://postgres@127.0.0.1:5432/postgres",
        ),
        ("postgresql://app:s3cret@127.0.0.1:5432/city", "postgresql://app:***@127.0.0.1:5432/city"),
        # '@' and ':' inside a password must not leak its tail
        ("postgresql://app:p%40ss:w@rd@127.0.0.1/city", "postgresql://app:***@127.0.0.1/city"),
        (
            "postgres://app:x@[::1]:5433/city?sslmode=disable",
            "postgres://app:***@[::1]:5433/city?sslmode=disable",
        ),
        (
            "postgresql://127.0.0.1/city?user=app&password=hunter2",
            "postgresql://127.0.0.1/city?user=app&password=***",
        ),
        (
            "host=127.0.0.1 user=app password=hunter2 dbname=city",
            "host=127.0.0.1 user=app password=*** dbname=city",
        ),
        (
            "host=127.0.0.1 password = 'a b\\' c' dbname=city",
            "host=127.0.0.1 password = *** dbname=city",
        ),
        ("", ""),
    ],
)
def test_redact_hides_passwords(dsn: str, expected: str) -> None:
    assert redact(dsn) == expected


def test_redact_never_raises_on_garbage() -> None:
    out = redact("postgresql://app:secret@[::1/city")  # unbalanced bracket: urlsplit raises
    assert "secret" not in out


def test_with_database_replaces_only_the_path() -> None:
    dsn = "postgresql://app:pw@127.0.0.1:5432/postgres?sslmode=disable"
    assert with_database(dsn, "cityline_t_1") == (
        "postgresql://app:pw@127.0.0.1:5432/cityline_t_1?sslmode=disable"
    )
    assert with_database("postgresql://127.0.0.1", "x") == "postgresql://127.0.0.1/x"


def test_with_database_rejects_key_value_dsns() -> None:
    with pytest.raises(ValueError):
        with_database("host=127.0.0.1 dbname=x", "y")
