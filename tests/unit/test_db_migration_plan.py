from __future__ import annotations

from pathlib import Path

import pytest

from db.migrations import SchemaFile, checksum, load_schema_files, plan_migrations


def _file(name: str, sql: str) -> SchemaFile:
    return SchemaFile(name, Path(f"{name}/schema.sql"), sql, checksum(sql))


def test_everything_is_new_on_an_empty_database_in_given_order() -> None:
    files = [_file("cases", "a"), _file("acd", "b"), _file("ivr", "c")]
    assert [f.name for f in plan_migrations(files, {})] == ["cases", "acd", "ivr"]


def test_nothing_to_do_when_checksums_match() -> None:
    files = [_file("cases", "a"), _file("acd", "b")]
    assert plan_migrations(files, {f.name: f.checksum for f in files}) == []


def test_changed_file_is_planned_again_keeping_order() -> None:
    old = [_file("cases", "a"), _file("acd", "b"), _file("ivr", "c")]
    applied = {f.name: f.checksum for f in old}
    new = [_file("cases", "a2"), _file("acd", "b"), _file("ivr", "c2")]
    assert [f.name for f in plan_migrations(new, applied)] == ["cases", "ivr"]


def test_records_of_files_no_longer_given_are_ignored() -> None:
    files = [_file("cases", "a")]
    applied = {"cases": files[0].checksum, "retired": "x"}
    assert plan_migrations(files, applied) == []


def test_checksum_is_content_based() -> None:
    assert checksum("CREATE TABLE x ();") == checksum("CREATE TABLE x ();")
    assert checksum("CREATE TABLE x ();") != checksum("CREATE TABLE x ( );")
    assert len(checksum("")) == 64


def test_load_reads_all_files_and_rejects_duplicates(tmp_path: Path) -> None:
    (tmp_path / "a.sql").write_text("SELECT 1;")
    (tmp_path / "b.sql").write_text("SELECT 2;")
    loaded = load_schema_files([("b", tmp_path / "b.sql"), ("a", tmp_path / "a.sql")])
    assert [f.name for f in loaded] == ["b", "a"]
    assert loaded[0].sql == "SELECT 2;"
    assert loaded[0].checksum == checksum("SELECT 2;")
    with pytest.raises(ValueError, match="twice"):
        load_schema_files([("a", tmp_path / "a.sql"), ("a", tmp_path / "b.sql")])


def test_missing_file_fails_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "a.sql").write_text("SELECT 1;")
    with pytest.raises(FileNotFoundError):
        load_schema_files([("a", tmp_path / "a.sql"), ("b", tmp_path / "missing.sql")])
