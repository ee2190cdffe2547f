"""Checking and backing up a database file, safe while a server is writing to it."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import apsw

from tracebox.appliance.store import connect
from tracebox.appliance.store.schema import MIGRATIONS, schema_version

BACKUP_PAGES_PER_STEP = 4096


@dataclass
class CheckReport:
    path: str
    schema_version: int
    newest_schema: int
    integrity: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    bytes_on_disk: int = 0

    @property
    def ok(self) -> bool:
        return self.integrity == ["ok"] and self.schema_version <= self.newest_schema


def check(path: str | os.PathLike, *, quick: bool = False) -> CheckReport:
    """SQLite's integrity check plus what the file holds. Raises FileNotFoundError for a missing file."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no database at {path}")
    conn = connect(path, readonly=True)
    try:
        pragma = "quick_check" if quick else "integrity_check"
        integrity = [row[0] for row in conn.execute(f"PRAGMA {pragma}")]
        report = CheckReport(str(path), schema_version(conn), len(MIGRATIONS), integrity)
        if report.schema_version:
            for name, sql in (
                ("spans", "SELECT count(*) FROM spans"),
                ("traces", "SELECT count(DISTINCT trace_id) FROM spans"),
                ("services", "SELECT count(*) FROM service_names"),
                ("llm_calls", "SELECT count(*) FROM llm_calls"),
            ):
                report.counts[name] = conn.execute(sql).fetchall()[0][0]
    finally:
        conn.close()
    report.bytes_on_disk = sum(os.path.getsize(p) for p in (f"{path}", f"{path}-wal") if os.path.exists(p))
    return report


def backup(
    source: str | os.PathLike, target: str | os.PathLike, progress: Callable[[int, int], None] | None = None
) -> int:
    """Copy a live database page by page into ``target`` (which must not exist); returns its size."""
    target = Path(target)
    if target.exists():
        raise FileExistsError(f"{target} exists; choose a new file name")
    if not Path(source).is_file():
        raise FileNotFoundError(f"no database at {source}")
    src = connect(source, readonly=True)
    dst = apsw.Connection(str(target))
    try:
        with dst.backup("main", src, "main") as step:
            while not step.done:
                step.step(BACKUP_PAGES_PER_STEP)
                if progress:
                    progress(step.pagecount - step.remaining, step.pagecount)
    finally:
        dst.close()
        src.close()
    return target.stat().st_size
