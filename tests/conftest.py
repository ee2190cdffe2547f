"""A real tracebox server per test module (or per test), on loopback with its own SQLite file."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

READY = re.compile(r"tracebox ready: (.*) db=")
START_TIMEOUT_S = 30


class PortTaken(RuntimeError):
    """Another process took a port between our pick and the server's bind."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Tracebox:
    """A running ``tracebox serve`` child process and how to reach it."""

    db: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    ports: dict[str, int] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def otlp_http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['otlp-http']}"

    @property
    def otlp_grpc_target(self) -> str:
        return f"127.0.0.1:{self.ports['otlp-grpc']}"

    def start(self) -> Tracebox:
        """Start on free ports (the main port's 0 asks the OS; OTLP's 0 means off, so pick two)."""
        for _attempt in range(3):
            try:
                return self._start(free_port(), free_port())
            except PortTaken:
                continue
        raise RuntimeError("no free ports for tracebox after 3 attempts")

    def _start(self, otlp_http: int, otlp_grpc: int, port: int = 0) -> Tracebox:
        cmd = [
            sys.executable,
            "-m",
            "tracebox.appliance.cli",
            "serve",
            "--db",
            str(self.db),
            "--port",
            str(port),
        ]
        cmd += ["--otlp-http-port", str(otlp_http), "--otlp-grpc-port", str(otlp_grpc), *self.args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.log.append(line)
            match = READY.search(line)
            if match:
                self.ports = {
                    k: int(v.rsplit(":", 1)[1]) for k, v in (p.split("=", 1) for p in match[1].split())
                }
                return self
        self.proc.kill()
        output = "".join(self.log) + (self.proc.stdout.read() or "")
        if "cannot listen" in output:
            raise PortTaken(output)
        raise RuntimeError("tracebox did not start:\n" + output)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self.proc.stdout:
            self.log.append(self.proc.stdout.read())
        self.proc = None
        return code

    def restart(self) -> Tracebox:
        """Stop and start again on the same ports, as a restarted service would be."""
        ports = self.ports
        self.stop()
        return self._start(ports["otlp-http"], ports["otlp-grpc"], ports["http"])

    def post(self, path: str, body: bytes | str, content_type: str = "application/json", **headers: str):
        data = body.encode() if isinstance(body, str) else body
        return requests.post(
            self.url + path, data=data, headers={"Content-Type": content_type, **headers}, timeout=30
        )

    def get(self, path: str, **params):
        return requests.get(self.url + path, params=params, timeout=30)

    def get_json(self, path: str, **params):
        response = self.get(path, **params)
        assert response.status_code == 200, f"{path} {params} -> {response.status_code} {response.text}"
        return response.json()


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.1) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds (background work is async)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not reached in {timeout} s")


def self_traced(server: Tracebox, trace_id: str) -> list[dict]:
    """The spans tracebox recorded of its own work in ``trace_id`` (written just after the response,
    so polled briefly; an empty list if none came)."""
    for _ in range(50):
        response = server.get(f"/api/v2/trace/{trace_id}")
        if response.status_code == 200:
            return response.json()
        time.sleep(0.1)
    return []


def start_tracebox(db: Path, *args: str, **env: str) -> Tracebox:
    return Tracebox(db=db, args=list(args), env=env).start()


@pytest.fixture(scope="module")
def tracebox(tmp_path_factory) -> Iterator[Tracebox]:
    """One server for a test module; tests keep apart by using their own trace ids and service names."""
    server = start_tracebox(tmp_path_factory.mktemp("tracebox") / "tracebox.db")
    yield server
    server.stop()


@pytest.fixture
def fresh_tracebox(tmp_path) -> Iterator[Tracebox]:
    """A server of the test's own, for tests that count everything stored."""
    server = start_tracebox(tmp_path / "tracebox.db")
    yield server
    server.stop()
