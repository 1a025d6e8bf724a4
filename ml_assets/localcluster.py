"""The cluster profile's services on one machine, for trying the profile and for its test:
PostgreSQL (the Dagster instance), Redis (the Celery broker), an S3 emulator (moto) and Celery
workers, each on 127.0.0.1, each started here and stopped by the PID started.

    python -m ml_assets.localcluster up --state /tmp/mlc      # prints the environment to export
    python -m ml_assets.localcluster down --state /tmp/mlc    # stops what `up` started, by PID

The commands each service runs are the ones README "Running on a cluster" gives for a real
deployment; here they listen on loopback and keep their data in throwaway folders. Needs the
`cluster` extra, Debian's `postgresql` and `redis-server`, and `moto[server]` (test extra).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ml_assets.devserver import free_port

BIN = Path(sys.executable).parent
PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_TEMPLATE = PROJECT_ROOT / "deploy" / "cluster" / "dagster.yaml"
PG_DATABASE = "dagster"


class ServiceError(RuntimeError):
    pass


def postgres_bin() -> Path | None:
    """Debian's PostgreSQL server binaries (not on PATH: /usr/lib/postgresql/<version>/bin)."""
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


def missing_programs(workers: int = 2) -> list[str]:
    """What this machine lacks for the services (empty: all can start)."""
    missing = []
    if postgres_bin() is None:
        missing.append("PostgreSQL server (apt-get install postgresql)")
    if shutil.which("redis-server") is None:
        missing.append("redis-server (apt-get install redis-server)")
    if not (BIN / "moto_server").exists():
        missing.append("moto_server (pip install 'moto[server]')")
    if workers and not (BIN / "celery").exists():
        missing.append("celery (pip install -e '.[cluster]')")
    return missing


def _as_postgres_user():
    """When root, PostgreSQL refuses to run: its processes run as the `postgres` user."""
    if os.getuid() != 0:
        return None, None
    user = pwd.getpwnam("postgres")

    def demote():
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return demote, user


def _wait_for_port(port: int, proc: subprocess.Popen, name: str, log: Path, timeout=60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"{name} exited ({proc.returncode}):\n{_tail(log)}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise ServiceError(f"{name} did not listen on 127.0.0.1:{port} in {timeout} s:\n{_tail(log)}")


def _tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


@dataclass
class LocalCluster:
    """Starts the services in `state` (a folder of logs and data); `stop()` ends each one by
    the PID it started (the process group it leads), whatever state it is in."""

    state: Path
    workers: int = 2
    # extra environment of the workers (the spec, the data and lake roots, the key)
    worker_env: dict = field(default_factory=dict)
    processes: dict = field(default_factory=dict)
    ports: dict = field(default_factory=dict)
    bucket: str = "ml-assets"
    # which services to start (a benchmark of the lake alone needs only "s3")
    services: tuple[str, ...] = ("postgres", "redis", "s3")
    _pg_dir: Path | None = None
    # Redis asks every client for this (made at start, kept in the state folder's 0600 config)
    redis_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    # -- the environment a client of these services needs ----------------------------------

    def env(self) -> dict[str, str]:
        env = self._env()
        return {k: v for k, v in env.items() if v is not None}

    def _env(self) -> dict[str, str | None]:
        pg, redis, s3 = (self.ports.get(k) for k in ("postgres", "redis", "s3"))
        if not (pg and redis):
            return {
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3}",
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_REGION": "us-east-1",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ALLOW_HTTP": "true",
            }
        return {
            "ML_ASSETS_PG_HOST": "127.0.0.1",
            "ML_ASSETS_PG_PORT": str(self.ports["postgres"]),
            "ML_ASSETS_PG_USER": "postgres",
            "ML_ASSETS_PG_PASSWORD": "",
            "ML_ASSETS_PG_DB": PG_DATABASE,
            "ML_ASSETS_CELERY_BROKER": self.redis_url(0),
            "ML_ASSETS_CELERY_BACKEND": self.redis_url(1),
            "ML_ASSETS_COMPUTE_LOG_BUCKET": self.bucket,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.ports['s3']}",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            # delta-rs talks plain HTTP to the emulator only when told so
            "AWS_ALLOW_HTTP": "true",
            "DAGSTER_HOME": str(self.state / "dagster_home"),
        }

    # -- start / stop -------------------------------------------------------------------------

    def _spawn(self, name: str, cmd: list[str], env=None, preexec=None, cwd=None):
        log = self.state / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                preexec_fn=preexec,
                start_new_session=True,  # its own process group: stopped with all it starts
            )
        self.processes[name] = proc
        self._record()
        return proc, log

    def _record(self) -> None:
        """What `down` needs to stop the services of an `up` that has exited: each PID, its
        start time (so that a reused PID is never signalled) and the Postgres data folder."""
        pids = {name: proc.pid for name, proc in self.processes.items()}
        started = {}
        for name, pid in pids.items():
            try:
                started[name] = _start_ticks(pid)
            except OSError:
                pass
        record = {"pids": pids, "started": started, "pg_dir": str(self._pg_dir or "")}
        (self.state / "pids.json").write_text(json.dumps(record, indent=2))

    def start(self) -> LocalCluster:
        missing = missing_programs(self.workers) if self.services != ("s3",) else []
        if missing:
            raise ServiceError("cannot start the cluster services: missing " + "; ".join(missing))
        self.state.mkdir(parents=True, exist_ok=True)
        try:
            if "postgres" in self.services:
                self._start_postgres()
            if "redis" in self.services:
                self._start_redis()
            self._start_s3()
            if "postgres" in self.services:
                self._write_instance()
            for i in range(1, self.workers + 1):
                self._start_worker(i)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_postgres(self) -> None:
        pg = postgres_bin()
        demote, user = _as_postgres_user()
        # its data folder in the system temp folder, owned by the user it runs as
        self._pg_dir = Path(tempfile.mkdtemp(prefix="ml_assets_pg_"))
        if user is not None:
            os.chown(self._pg_dir, user.pw_uid, user.pw_gid)
        data = self._pg_dir / "data"
        initdb = subprocess.run(
            [str(pg / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            capture_output=True,
            text=True,
            preexec_fn=demote,
        )
        if initdb.returncode:
            raise ServiceError(f"initdb failed: {initdb.stdout}{initdb.stderr}")
        port = self.ports["postgres"] = free_port()
        cmd = [str(pg / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port)]
        cmd += ["-k", str(self._pg_dir), "-c", "fsync=off", "-c", "max_connections=200"]
        proc, log = self._spawn("postgres", cmd, preexec=demote, cwd=self._pg_dir)
        _wait_for_port(port, proc, "postgres", log)
        import psycopg2

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(
                    host="127.0.0.1", port=port, user="postgres", dbname="postgres"
                )
                break
            except psycopg2.OperationalError:  # listening, still starting up
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {PG_DATABASE}")
        conn.close()

    def redis_url(self, db: int) -> str:
        return f"redis://:{self.redis_password}@127.0.0.1:{self.ports['redis']}/{db}"

    def _start_redis(self) -> None:
        port = self.ports["redis"] = free_port()
        # the password in a file only its owner reads, never on a command line (`ps` shows those)
        conf = self.state / "redis.conf"
        conf.touch(mode=0o600)
        conf.chmod(0o600)
        conf.write_text(f"requirepass {self.redis_password}\n")
        cmd = [shutil.which("redis-server"), str(conf), "--bind", "127.0.0.1", "--port", str(port)]
        cmd += ["--save", "", "--appendonly", "no", "--dir", str(self.state)]
        proc, log = self._spawn("redis", cmd)
        _wait_for_port(port, proc, "redis", log)

    def _start_s3(self) -> None:
        port = self.ports["s3"] = free_port()
        proc, log = self._spawn(
            "s3", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
        )
        _wait_for_port(port, proc, "moto_server", log)
        self.s3().create_bucket(Bucket=self.bucket)

    def s3(self):
        """A boto3 client of the S3 emulator."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.ports['s3']}",
            aws_access_key_id="local",
            aws_secret_access_key="local",
            region_name="us-east-1",
        )

    def upload(self, folder: Path, prefix: str, keep=lambda path: True) -> int:
        """Every CSV file under `folder` that `keep(path)` accepts, as an object of the bucket
        under `prefix` (its path below `folder` kept); returns how many."""
        client, done = self.s3(), 0
        for path in sorted(Path(folder).rglob("*.csv")):
            if keep(path):
                client.upload_file(str(path), self.bucket, f"{prefix}/{path.relative_to(folder)}")
                done += 1
        return done

    def _write_instance(self) -> None:
        home = self.state / "dagster_home"
        home.mkdir(exist_ok=True)
        shutil.copy(INSTANCE_TEMPLATE, home / "dagster.yaml")

    def _start_worker(self, i: int) -> None:
        env = {**os.environ, **self.worker_env, **self.env()}
        # the URLs (with Redis' password) by environment, which Celery reads before its
        # config; on the command line `ps` would show them to every user of the machine
        env["CELERY_BROKER_URL"] = env["ML_ASSETS_CELERY_BROKER"]
        env["CELERY_RESULT_BACKEND"] = env["ML_ASSETS_CELERY_BACKEND"]
        cmd = [str(BIN / "celery"), "-A", "dagster_celery.app"]
        cmd += ["worker", "-Q", "dagster", "-n", f"worker{i}@%h"]
        cmd += ["--concurrency", "1", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
        self._spawn(f"worker{i}", cmd, env=env, cwd=PROJECT_ROOT)

    def stop(self) -> None:
        """Each service by the process group of the PID started: SIGTERM, SIGKILL after 15 s."""
        from ml_assets.devserver import stop_process_group

        for name in reversed(list(self.processes)):
            stop_process_group(self.processes[name], grace=15)
        self.processes.clear()
        self._record()
        if self._pg_dir is not None:
            shutil.rmtree(self._pg_dir, ignore_errors=True)
            self._pg_dir = None

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _started_by_up(pid: int, started: float | None) -> bool:
    """The PID is still the process `up` started (not a reuse of its number): its start time
    (from /proc, in clock ticks since boot) is the one recorded."""
    try:
        return started is None or _start_ticks(pid) == started
    except OSError:
        return False


def _start_ticks(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return float(stat.rsplit(")", 1)[1].split()[19])


def _stop_recorded(state: Path, grace: float = 15) -> None:
    """`down`: the PIDs `up` recorded, each one's process group (the PID leads it): SIGTERM,
    then SIGKILL to what is left after `grace` seconds; then the Postgres data folder."""
    record = json.loads((state / "pids.json").read_text())
    for name, pid in reversed(list(record.get("pids", record).items())):
        if name in ("pids", "started", "pg_dir") or not isinstance(pid, int):
            continue
        if not _started_by_up(pid, record.get("started", {}).get(name)):
            print(f"{name} (pid {pid}) had already stopped")
            continue
        try:
            os.killpg(pid, signal.SIGINT if name == "postgres" else signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.2)
        if _group_alive(pid):
            os.killpg(pid, signal.SIGKILL)
        print(f"stopped {name} (pid {pid})")
    if record.get("pg_dir"):
        shutil.rmtree(record["pg_dir"], ignore_errors=True)
    (state / "pids.json").write_text("{}")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml_assets.localcluster")
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--state", type=Path, required=True, help="a folder for logs and PIDs")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if args.action == "down":
        _stop_recorded(args.state)
        return 0
    cluster = LocalCluster(args.state, workers=args.workers)
    try:
        cluster.start()
    except ServiceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for key, value in cluster.env().items():
        print(f"export {key}={value}")
    print(f"# stop with: python -m ml_assets.localcluster down --state {args.state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
