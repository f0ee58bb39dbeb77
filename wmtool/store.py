"""The evaluation store: one SQLite file (WAL mode) with a row per finished cell, beside the cells' model
files, named by their keys. A row is written in one statement after its files are in place, so a sweep
killed at any moment loses only the cells in flight, and two sweeps on one store never clash (the first
row for a key wins; the cell's result does not depend on who computed it)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from wmtool.errors import UserError

LOCK_TIMEOUT = 60
"""Seconds a sweep waits for another one's lock on the store."""
SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    deps TEXT NOT NULL,
    row TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    result TEXT NOT NULL,
    error TEXT,
    seconds REAL NOT NULL,
    finished REAL NOT NULL
)
"""


class Store:
    """A sweep's results: ``DIR/results.sqlite`` and ``DIR/cells/`` (model and key files by cell key)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / "cells").mkdir(exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the store {self.folder}: {exc}") from None
        self.path = self.folder / "results.sqlite"
        self._create()

    def _create(self) -> None:
        """Switch the file to WAL and create the table. Sweeps starting at the same moment on a new store
        can find it locked while another switches its journal mode (SQLite does not wait there), so that is
        retried for as long as a connection waits for a lock."""
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                with self._connect() as db:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute(SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise UserError(f"{self.path}: not a wmtool results store ({exc})") from None
                if time.monotonic() > deadline:
                    raise UserError(f"{self.path}: locked by another process for {LOCK_TIMEOUT} s") from None
                time.sleep(0.05)
            except sqlite3.DatabaseError as exc:
                raise UserError(f"{self.path}: not a wmtool results store ({exc})") from None

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=LOCK_TIMEOUT)

    def files(self, key: str) -> Path:
        """The folder for one cell's files."""
        return self.folder / "cells" / key

    def finished(self) -> dict[str, dict[str, Any]]:
        """Every finished cell's status and result, by key."""
        with self._connect() as db:
            rows = db.execute("SELECT key, status, result, error FROM cells").fetchall()
        return {key: {"status": status, "result": json.loads(result), "error": error}
                for key, status, result, error in rows}

    def put(self, cell: Any, status: str, result: dict[str, Any], error: str | None, seconds: float) -> None:
        """Record one finished cell (a key already recorded keeps its first row)."""
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO cells VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (cell.key, cell.kind, json.dumps(cell.params, sort_keys=True, default=str),
                        json.dumps(list(cell.deps)), json.dumps(cell.row, sort_keys=True), status,
                        json.dumps(result, sort_keys=True), error, seconds, time.time()))

    def verify_rows(self) -> list[dict[str, Any]]:
        """The matrix's rows: every verify cell's coordinates with its status and result."""
        with self._connect() as db:
            rows = db.execute("SELECT row, status, result, error FROM cells WHERE kind = 'verify'").fetchall()
        return [{**json.loads(row), "status": status, **json.loads(result), "error": error}
                for row, status, result, error in rows]
