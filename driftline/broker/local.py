"""A single-node KRaft Kafka broker run from jars that Maven resolves.

No Docker here: ``recipe/pom.xml`` (package data, so an installed wheel
can start a broker too) names Apache Kafka and a log4j2
binding; ``mvn dependency:copy-dependencies`` puts them in a cache folder, the
storage tool formats the log directory once, and ``java -cp 'libs/*'
kafka.Kafka`` runs the broker detached from the CLI. Data, logs and the pid
live under the state directory and survive ``down``/``up``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from driftline.errors import BrokerError
from driftline.kafka_clients import record_bootstrap
from driftline.processes import spawn
from driftline.settings import Settings

RECIPE_DIR = Path(__file__).resolve().parent / "recipe"
MIN_JAVA = 17


def java_major_version(java: str) -> int:
    """Major version of a ``java`` binary (``java -version`` prints to stderr)."""
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process still answers kill(0): reap it first.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


@dataclass(frozen=True)
class SecureListener:
    """A SASL_SSL client listener: TLS with a PEM key and certificate, SCRAM users stored at format time.

    Clients then need ``security_protocol=SASL_SSL``, the SCRAM mechanism,
    a user's credentials and the CA (``ssl_cafile``). The broker talks to
    itself as the first user.
    """

    keystore_pem: Path  # the broker's private key (unencrypted PKCS#8) followed by its certificate chain
    truststore_pem: Path  # the CA that signed it
    users: tuple[tuple[str, str], ...]  # (name, password); the first is the broker's own
    mechanism: str = "SCRAM-SHA-256"

    def properties(self) -> str:
        name, password = self.users[0]
        jaas = f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{name}" ' \
               f'password="{password}";'
        return "\n".join([
            f"sasl.enabled.mechanisms={self.mechanism}",
            f"sasl.mechanism.inter.broker.protocol={self.mechanism}",
            f"listener.name.sasl_ssl.{self.mechanism.lower()}.sasl.jaas.config={jaas}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={self.keystore_pem}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.truststore_pem}",
            "ssl.endpoint.identification.algorithm=https",
        ])

    def format_args(self) -> list[str]:
        return [arg for name, password in self.users
                for arg in ("--add-scram", f"{self.mechanism}=[name={name},password={password}]")]

    def client_config(self) -> dict[str, str]:
        name, password = self.users[0]
        return {"security.protocol": "SASL_SSL", "sasl.mechanism": self.mechanism, "sasl.username": name,
                "sasl.password": password, "ssl.ca.location": str(self.truststore_pem)}


@dataclass
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    data_dir: Path
    log_file: Path


def node_ports(settings: Settings, node_id: int) -> tuple[int, int]:
    """Client and controller ports of node ``node_id`` (1-based): the configured ports, then +2 per node."""
    return settings.broker_port + 2 * (node_id - 1), settings.controller_port + 2 * (node_id - 1)


class LocalBroker:
    """Start, stop and inspect one jar-based KRaft node under ``settings.state_dir``.

    Alone (``nodes=1``) it is the single-node broker; as node ``node_id`` of
    ``nodes`` it is one member of a :class:`~driftline.broker.cluster.LocalCluster`,
    with its own folder, ports and pid, and the same cluster id as its peers.
    """

    def __init__(self, settings: Settings, jars_dir: Path | None = None, *, node_id: int = 1,
                 nodes: int = 1, secure: SecureListener | None = None) -> None:
        self.settings = settings
        self.secure = secure
        self.node_id, self.nodes = node_id, nodes
        self.port, self.controller_port = node_ports(settings, node_id)
        self.home = settings.state_path / "kafka" / (f"node{node_id}" if nodes > 1 else "")
        self.jars_dir = jars_dir or settings.state_path / f"kafka-{settings.kafka_version}" / "libs"
        self.data_dir = self.home / "data"
        self.log_file = self.home / "server.log"
        self.pid_file = self.home / "broker.pid"
        self.properties_file = self.home / "server.properties"
        self.cluster_id_file = settings.state_path / "kafka" / "cluster.id"

    @property
    def bootstrap(self) -> str:
        return f"{self.settings.broker_host}:{self.port}"

    # ------------------------------------------------------------ jars
    def _recipe_hash(self) -> str:
        return hashlib.sha256((RECIPE_DIR / "pom.xml").read_bytes()).hexdigest()[:16]

    def jars_ready(self) -> bool:
        marker = self.jars_dir / ".recipe"
        return marker.exists() and marker.read_text().strip() == self._recipe_hash()

    def ensure_jars(self) -> Path:
        """Resolve Kafka's jars through Maven once; later calls reuse the cache."""
        if self.jars_ready():
            return self.jars_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                "Maven (mvn) is not installed, so Kafka's jars cannot be resolved; "
                "install Maven (apt-get install maven) or set KAFKA_BOOTSTRAP_SERVERS"
            )
        staging = self.jars_dir.with_name(self.jars_dir.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            mvn, "-q", "-B", "-f", str(RECIPE_DIR / "pom.xml"),
            "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-Dkafka.version={self.settings.kafka_version}",
            f"-DoutputDirectory={staging}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = " ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
            raise BrokerError(
                f"Maven could not resolve Kafka {self.settings.kafka_version}'s jars "
                f"(is Maven Central reachable?): {tail}"
            )
        (staging / ".recipe").write_text(self._recipe_hash())
        shutil.rmtree(self.jars_dir, ignore_errors=True)
        staging.rename(self.jars_dir)
        return self.jars_dir

    # ------------------------------------------------------------ state
    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def status(self) -> BrokerStatus:
        pid = self.pid()
        return BrokerStatus(pid is not None, pid, self.bootstrap, self.data_dir, self.log_file)

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java or not Path(java).exists():
            raise BrokerError(
                "Java is not installed, and the local Kafka broker needs JDK 17+ "
                "(apt-get install openjdk-17-jre-headless), or set KAFKA_BOOTSTRAP_SERVERS"
            )
        major = java_major_version(java)
        if major < MIN_JAVA:
            raise BrokerError(f"Kafka 4 needs Java {MIN_JAVA}+, but {java} is Java {major}")
        return java

    def _render_properties(self) -> None:
        template = string.Template((RECIPE_DIR / "server.properties").read_text())
        host = self.settings.broker_host
        voters = ",".join(f"{i}@{host}:{node_ports(self.settings, i)[1]}" for i in range(1, self.nodes + 1))
        replication = min(self.nodes, 3)
        self.properties_file.write_text(template.safe_substitute(
            host=host,
            port=self.port,
            controller_port=self.controller_port,
            log_dirs=str(self.data_dir),
            node_id=self.node_id,
            voters=voters,
            replication=replication,
            min_isr=max(1, replication - 1),
            listener="SASL_SSL" if self.secure else "PLAINTEXT",  # the controller's listener stays local
        ) + (self.secure.properties() + "\n" if self.secure else ""))

    def cluster_id(self) -> str:
        """The id every node of this state folder is formatted with (made once, kept, for a cluster)."""
        if self.nodes > 1 and self.cluster_id_file.exists():
            return self.cluster_id_file.read_text().strip()
        made = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if self.nodes > 1:
            self.cluster_id_file.parent.mkdir(parents=True, exist_ok=True)
            self.cluster_id_file.write_text(made)
        return made

    def _java_cmd(self, java: str, main: str, *args: str) -> list[str]:
        return [
            java, f"-Xmx{self.settings.broker_heap_mb}m", f"-Xms{self.settings.broker_heap_mb}m",
            "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={RECIPE_DIR / 'log4j2.yaml'}",
            "-cp", f"{self.jars_dir}/*", main, *args,
        ]

    def _format_storage(self, java: str) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        proc = subprocess.run(
            # --cluster-id=ID, one argument: a base64url id may start with "-" (1 in 64), which a parser
            # would read as an option
            self._java_cmd(java, "kafka.tools.StorageTool", "format", f"--cluster-id={self.cluster_id()}",
                           "-c", str(self.properties_file), "--ignore-formatted",
                           *(self.secure.format_args() if self.secure else [])),
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            tail = " ".join(proc.stderr.strip().splitlines()[-2:])
            raise BrokerError(f"Kafka's storage tool could not format {self.data_dir}: {tail}")

    # ------------------------------------------------------------ up/down
    def up(self, timeout: float = 90.0, *, tied: bool = False) -> str:
        """Start the broker if it is not running and wait until it answers; return its address.

        ``driftline broker up`` leaves the broker running on its own; a test
        session passes ``tied=True`` so the broker dies with the session
        however the session ends (see :mod:`driftline.processes`). A broker
        this call started and then gave up on (it did not answer in time, or
        the caller was interrupted) is stopped before the error is raised: a
        bench once left one running, untied, behind "did not answer within 90s".
        """
        process = self.start(tied=tied)
        try:
            self.wait_ready(timeout, process)
        except BaseException as exc:
            if process is None:  # running before this call: not ours to stop
                raise
            self.down()  # started here and given up on: not left running behind the error
            if isinstance(exc, BrokerError):
                raise BrokerError(f"{exc} (the broker it started is stopped)") from None
            raise
        return self.bootstrap

    def start(self, *, tied: bool = False) -> subprocess.Popen | None:
        """Start the node without waiting (a cluster's nodes must all start before any answers)."""
        if self.pid() is not None:
            return None
        host = self.settings.broker_host
        for port, what in ((self.port, "broker_port"), (self.controller_port, "controller_port")):
            if port_in_use(host, port):
                raise BrokerError(
                    f"port {host}:{port} is already in use by another program; stop it or set "
                    f"DRIFTLINE_{what.upper()} to a free port"
                )
        java = self._java()
        self.ensure_jars()
        self.home.mkdir(parents=True, exist_ok=True)
        self._render_properties()
        self._format_storage(java)
        with self.log_file.open("ab") as log:
            process = spawn(self._java_cmd(java, "kafka.Kafka", str(self.properties_file)), stdout=log,
                            tied=tied, python_child=False)
        self.pid_file.write_text(f"{process.pid}\n")
        if self.nodes == 1:
            record_bootstrap(self.settings, self.bootstrap)
        return process

    def wait_ready(self, timeout: float, process: subprocess.Popen | None = None) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        admin = None
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise BrokerError(
                    f"the Kafka broker exited with code {process.returncode} while starting; "
                    f"see {self.log_file}: {self._log_tail()}"
                )
            # Wait for the port first: a client pointed at a closed port logs every retry.
            if not port_in_use(self.settings.broker_host, self.port):
                time.sleep(0.2)
                continue
            admin = admin or AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0,
                                          **(self.secure.client_config() if self.secure else {})})
            try:
                if len(admin.list_topics(timeout=2).brokers) >= self.nodes:
                    return
            except Exception:  # listening but not serving metadata yet
                time.sleep(0.3)
        raise BrokerError(f"the Kafka broker did not answer within {timeout:.0f}s; see {self.log_file}")

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return "no log"
        errors = [ln for ln in lines if " ERROR " in ln or "Exception" in ln]
        return (errors or lines or ["no log"])[-1][:300]

    def kill(self) -> None:
        """SIGKILL the node (a crash, for failure tests); ``start``/``up`` brings it back."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

    def terminate(self) -> None:
        """Ask the node to stop (SIGTERM) without waiting; :meth:`down` waits and escalates."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)

    def down(self, timeout: float = 30.0) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after ``timeout``). False if it was not running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.2)
        self.kill()  # whatever is left after the timeout (and the pid file either way)
        return True
