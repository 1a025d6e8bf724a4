"""The local cluster's services as an attacker on the same machine meets them: Redis asks for a
password (made at start, in a file only its owner reads), and no process's command line holds
it, since any user of the machine can read those (`ps`)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from ml_assets.localcluster import LocalCluster, missing_programs

pytestmark = [pytest.mark.cluster, pytest.mark.integration]


def redis_says(port: int, *commands: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        for command in commands:
            conn.sendall(command + b"\r\n")
        time.sleep(0.3)
        return conn.recv(4096)


def command_lines(pid: int) -> list[str]:
    """The command lines of a process and every process under it."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            out.append(Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode())
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        todo += [int(c) for c in children]
    return out


def test_redis_wants_its_password_and_no_command_line_shows_it(tmp_path):
    missing = missing_programs(workers=1)
    if missing:
        pytest.skip("CLUSTER TEST SKIPPED: missing " + "; ".join(missing))
    services = LocalCluster(tmp_path / "services", workers=1).start()
    try:
        port, password = services.ports["redis"], services.redis_password
        assert len(password) >= 24
        assert b"NOAUTH" in redis_says(port, b"PING")
        assert b"WRONGPASS" in redis_says(port, b"AUTH wrong-password", b"PING")
        assert b"+OK\r\n+PONG" in redis_says(port, f"AUTH {password}".encode(), b"PING")
        env = services.env()
        assert f":{password}@" in env["ML_ASSETS_CELERY_BROKER"]
        assert (services.state / "redis.conf").stat().st_mode & 0o077 == 0
        # the worker got the URLs by environment and connected with them
        log = services.state / "worker1.log"
        deadline = time.monotonic() + 60
        while "ready" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "ready" in log.read_text(), log.read_text()[-2000:]
        lines = [c for p in services.processes.values() for c in command_lines(p.pid)]
        assert any("celery" in c for c in lines) and any("redis-server" in c for c in lines)
        assert not [c for c in lines if password in c]
        assert password not in log.read_text()
    finally:
        services.stop()
