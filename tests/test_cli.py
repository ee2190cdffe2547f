"""The maintenance commands against a live server's database: demo, check, backup."""

from __future__ import annotations

import subprocess
import sys

import apsw


def tracebox_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tracebox.appliance.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_demo_then_check_and_backup_while_serving(fresh_tracebox, tmp_path):
    demo = tracebox_cli("demo", "--url", fresh_tracebox.url, "--traces", "30", "--seed", "7")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "/traces/" in demo.stdout  # links to example traces
    services = fresh_tracebox.get_json("/api/v2/services")
    assert {"api-gateway", "llm-router", "chat"} <= set(services)

    check = tracebox_cli("check", "--db", str(fresh_tracebox.db))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "integrity    ok" in check.stdout
    spans = int(
        next(
            line.split()[1].replace(",", "") for line in check.stdout.splitlines() if line.startswith("spans")
        )
    )
    assert spans > 30 * 5

    target = tmp_path / "backup.db"
    backup = tracebox_cli("backup", str(target), "--db", str(fresh_tracebox.db))
    assert backup.returncode == 0, backup.stderr
    copy = apsw.Connection(str(target))
    assert copy.execute("SELECT count(*) FROM spans").fetchall()[0][0] == spans
    assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    copy.close()

    again = tracebox_cli("backup", str(target), "--db", str(fresh_tracebox.db))
    assert again.returncode != 0 and "exists" in again.stderr


def test_check_reports_a_corrupt_file(tmp_path):
    db = tmp_path / "broken.db"
    conn = apsw.Connection(str(db))
    conn.execute("PRAGMA page_size = 4096; CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(100000));")
    conn.close()
    data = bytearray(db.read_bytes())
    data[4096 : 4096 + 8] = b"\x0d\xff\xff\xff\xff\xff\xff\xff"  # table t's root page: nonsense header
    db.write_bytes(bytes(data))
    result = tracebox_cli("check", "--db", str(db))
    assert result.returncode == 1


def test_check_of_a_missing_file_says_what_to_do(tmp_path):
    result = tracebox_cli("check", "--db", str(tmp_path / "nope.db"))
    assert result.returncode != 0 and "--db PATH" in result.stderr


def test_demo_against_nothing_fails_with_a_hint():
    result = tracebox_cli("demo", "--url", "http://127.0.0.1:9", "--traces", "2", timeout=120)
    assert result.returncode != 0
    assert "tracebox serve" in result.stdout + result.stderr
