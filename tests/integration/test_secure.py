"""The loop on a broker that only speaks SASL_SSL (SCRAM-SHA-256 over TLS), credentials from settings.

Certificates are made here with ``cryptography`` (a CA and a broker
certificate for 127.0.0.1/localhost); users are stored in the cluster's
metadata when its storage is formatted. The CLI, the SDK, the monitor, the
trainer's publishing path and a serving node all run against it with
nothing but ``DRIFTLINE_*`` settings; a wrong password is one sentence.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from driftline.broker import LocalBroker, free_port
from driftline.broker.local import SecureListener
from driftline.client import infer_body
from driftline.settings import load_settings
from schemas import Codec
from tests.integration.helpers import read_topic
from tests.integration.serving_helpers import publish_first_version, row_columns, start_node
from tests.integration.test_monitor import closed_windows, produce_stream, start_monitor, stop

pytestmark = [pytest.mark.integration, pytest.mark.cluster]
REPO_ROOT = Path(__file__).resolve().parents[2]
USERS = (("broker", "broker-secret-7f3a"), ("driftline", "client-secret-91bc"))


def _pem_pair(directory: Path) -> tuple[Path, Path]:
    """A CA, and a broker key + certificate it signed (SAN 127.0.0.1, localhost): keystore and truststore PEMs."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "driftline test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    keystore, truststore = directory / "broker.pem", directory / "ca.pem"
    keystore.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
                         + cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    truststore.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return keystore, truststore


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sasl-ssl")
    keystore, truststore = _pem_pair(directory)
    listener = SecureListener(keystore, truststore, USERS)
    base = load_settings(env={}, state_dir=str(directory / "state"), broker_port=free_port(),
                         controller_port=free_port())
    broker = LocalBroker(base, REPO_ROOT / ".driftline" / f"kafka-{base.kafka_version}" / "libs", secure=listener)
    try:
        bootstrap = broker.up(timeout=180, tied=True)
        yield bootstrap, truststore
    finally:
        broker.down(timeout=15)


def client_env(bootstrap: str, truststore: Path, password: str = USERS[1][1]) -> dict[str, str]:
    """Everything a driftline process needs to reach the secure cluster: settings, nothing else."""
    return {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DRIFTLINE_SECURITY_PROTOCOL": "SASL_SSL",
            "DRIFTLINE_SASL_MECHANISM": "SCRAM-SHA-256", "DRIFTLINE_SASL_USERNAME": USERS[1][0],
            "DRIFTLINE_SASL_PASSWORD": password, "DRIFTLINE_SSL_CAFILE": str(truststore),
            "DRIFTLINE_TOPIC_PREFIX": f"s{uuid.uuid4().hex[:8]}.", "DRIFTLINE_PARTITIONS": "2"}


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "driftline.cli.main", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)


def test_the_loop_runs_on_sasl_ssl_with_credentials_from_settings(secure_broker, tmp_path):
    bootstrap, truststore = secure_broker
    env = client_env(bootstrap, truststore)
    settings = load_settings(env=env, signing_key="secure-test-secret-0c1d")
    created = cli(env, "topics", "create")
    assert created.returncode == 0, created.stderr
    reference = tmp_path / "ref.csv"
    rng = np.random.default_rng(0)
    reference.write_text("x,y,plan\n" + "".join(f"{rng.normal():.4f},{rng.normal(5, 2):.4f},{rng.choice(['a', 'b', 'c'])}\n"
                                                for _ in range(3000)))
    profiled = cli(env, "profile", str(reference), "--model", "m")
    assert profiled.returncode == 0 and "-> topic" in profiled.stdout, profiled.stderr
    monitor_log = (tmp_path / "monitor.log").open("w")
    monitor = start_monitor(settings, instance="secure", stderr=monitor_log)
    node_log = (tmp_path / "node.log").open("w")
    try:
        sent = produce_stream(settings, events=60, rows=20, shift_from_window=None)  # the SDK
        assert len(sent) == 60
        windows = closed_windows(settings, {1_700_000_000_000}, timeout=120)
        assert windows[1_700_000_000_000].rows == 20 * 20, "the monitor read, summarised and committed"
        publish_first_version(settings)  # trained, signed and published through the registry
        node, url = start_node(settings, stderr=node_log, env=env)
        try:
            answer = httpx.post(f"{url}/v2/models/loans/infer", json=infer_body(row_columns(0), request_id="tls-1"),
                                timeout=10)
            assert answer.status_code == 200 and answer.json()["model_version"] == "1"
        finally:
            node.terminate()
            assert node.wait(timeout=60) == 0
    finally:
        stop(monitor)
    codec = Codec.default()
    served = [codec.decode(m.value(), "driftline.Prediction") for m in read_topic(settings, settings.topic("predictions"))]
    assert ["tls-1"] in [e["request_ids"] for e in served if e["model"] == "loans"], "the node emitted over SASL_SSL"
    models = cli(env, "models", "list")
    assert models.returncode == 0 and "loans" in models.stdout, models.stderr


def test_wrong_credentials_are_one_sentence_not_a_hang(secure_broker):
    bootstrap, truststore = secure_broker
    started = time.monotonic()
    done = cli(client_env(bootstrap, truststore, password="not-the-password"), "topics", "list", timeout=90)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    message = [ln for ln in lines if ln.startswith("driftline: error:")]
    assert message and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "authentication" in message[0].lower() or "credentials" in message[0].lower(), message
    assert time.monotonic() - started < 60
