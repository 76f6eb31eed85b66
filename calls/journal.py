"""The call-record journal on disk: every fact is appended here before the database sees it.

`<dir>/facts.jsonl` holds one fact a line (calls/facts.py encodes them), appended with
O_APPEND so a line is written whole or, at a crash mid-write, cut short (skipped with a
warning on the next load). `<dir>/applied` holds the number of the last fact the database has,
replaced atomically. Once every fact is applied the file is emptied, so it only grows while
the database is away. Plain blocking file calls, each small: an append is one write(2) into
the page cache, which a crash of this process does not lose; sync() makes it durable.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import structlog

from calls.facts import Fact, Replayed, encode, replay

log = structlog.get_logger(__name__)

FACTS_FILE = "facts.jsonl"
APPLIED_FILE = "applied"
# Empty the file once drained and at least this big (a fresh file costs nothing).
COMPACT_AFTER_BYTES = 256 * 1024


class Journal:
    def __init__(self, directory: Path, *, compact_after_bytes: int = COMPACT_AFTER_BYTES) -> None:
        self.directory = directory
        self.path = directory / FACTS_FILE
        self.applied_path = directory / APPLIED_FILE
        self._compact_after = compact_after_bytes
        self._fd: int | None = None
        self._size = 0

    def open(self) -> Replayed:
        """Open for appending; what the file holds beyond the last applied fact."""
        self.directory.mkdir(parents=True, exist_ok=True)
        applied = self._read_applied()
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            text = ""
        replayed = replay(text.splitlines(), applied)
        if replayed.bad_lines:
            log.warning("call_journal_bad_lines", path=str(self.path), lines=replayed.bad_lines)
        if text and not text.endswith("\n"):
            # A line cut short by a crash: end it, so the next fact starts on its own line.
            text += "\n"
            self.path.write_text(text, encoding="utf-8")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = len(text.encode("utf-8"))
        return replayed

    def append(self, fact: Fact) -> None:
        if self._fd is None:
            raise RuntimeError("call journal not open")
        line = (encode(fact) + "\n").encode("utf-8")
        os.write(self._fd, line)
        self._size += len(line)

    def mark_applied(self, seq: int, *, drained: bool) -> None:
        """The database has every fact through `seq`; drained: nothing is pending."""
        tmp = self.applied_path.with_suffix(".tmp")
        tmp.write_text(str(seq), encoding="utf-8")
        os.replace(tmp, self.applied_path)
        if drained and self._fd is not None and self._size >= self._compact_after:
            os.ftruncate(self._fd, 0)
            self._size = 0
            log.info("call_journal_emptied", path=str(self.path), applied_through=seq)

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(fd)
            os.close(fd)

    @property
    def size(self) -> int:
        return self._size

    def _read_applied(self) -> int:
        try:
            return int(self.applied_path.read_text(encoding="utf-8").strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError:
            log.error("call_journal_applied_unreadable", path=str(self.applied_path))
            return 0  # replaying everything is safe: every fact is idempotent
