"""Settings precedence and validation; alert CloudEvents."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from driftline import Alert
from driftline.alerts import AlertFormatError
from driftline.errors import ConfigError
from driftline.kafka_clients import common_config, producer_config
from driftline.settings import load_settings

ALERT_SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "alert.schema.json").read_text())


def test_env_beats_file_beats_default(tmp_path):
    config = tmp_path / "d.toml"
    config.write_text('[driftline]\npartitions = 8\ntopic_prefix = "file."\n')
    settings = load_settings(config, env={"DRIFTLINE_PARTITIONS": "3"})
    assert settings.partitions == 3
    assert settings.topic_prefix == "file."
    assert settings.replication_factor == 1


def test_kafka_bootstrap_servers_env_is_honoured():
    assert load_settings(env={"KAFKA_BOOTSTRAP_SERVERS": "k:9092"}).bootstrap_servers == "k:9092"


def test_bad_values_name_the_field():
    with pytest.raises(ConfigError, match="DRIFTLINE_BROKER_PORT must be an integer, got 'x'"):
        load_settings(env={"DRIFTLINE_BROKER_PORT": "x"})
    with pytest.raises(ConfigError, match="security_protocol 'TLS' is not one of"):
        load_settings(env={"DRIFTLINE_SECURITY_PROTOCOL": "TLS"})


def test_unknown_key_in_config_file_is_refused(tmp_path):
    config = tmp_path / "d.toml"
    config.write_text("partitons = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'partitons'"):
        load_settings(config, env={})


def test_security_settings_reach_every_client_and_secrets_are_masked():
    settings = load_settings(env={
        "DRIFTLINE_SECURITY_PROTOCOL": "SASL_SSL", "DRIFTLINE_SASL_MECHANISM": "SCRAM-SHA-512",
        "DRIFTLINE_SASL_USERNAME": "svc", "DRIFTLINE_SASL_PASSWORD": "hunter2",
        "DRIFTLINE_SSL_CAFILE": "/etc/ca.pem"})
    config = producer_config(settings)
    assert config["sasl.password"] == "hunter2" and config["ssl.ca.location"] == "/etc/ca.pem"
    assert config["enable.idempotence"] is True and config["acks"] == "all"
    assert common_config(settings)["security.protocol"] == "SASL_SSL"
    assert settings.masked()["sasl_password"] == "***"


def test_sasl_without_mechanism_is_refused():
    with pytest.raises(ConfigError, match="needs sasl_mechanism"):
        load_settings(env={"DRIFTLINE_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})


def make_alert(**kw):
    return Alert.create("driftline.drift", "churn", severity="warning",
                        data={"message": "age drifted", "window_start": 0, "window_end": 60000,
                              "features": [{"name": "age", "statistic": "psi", "value": 0.4,
                                            "threshold": 0.2}]},
                        identity=("0", "psi", "age"), **kw)


def test_alert_is_a_valid_cloudevent_per_the_published_schema():
    jsonschema.validate(json.loads(make_alert().to_json()), ALERT_SCHEMA)


def test_alert_id_is_deterministic_and_depends_on_identity():
    assert make_alert().id == make_alert().id
    other = Alert.create("driftline.drift", "churn", severity="warning", data={"message": ""},
                         identity=("60000", "psi", "age"))
    assert other.id != make_alert().id


def test_alert_round_trips_through_json():
    alert = make_alert()
    assert Alert.from_json(alert.to_json()) == alert
    assert alert.features == ["age"]


@pytest.mark.parametrize("raw, message", [
    (b"not json", "not JSON"), (b'{"a": 1}', "not a CloudEvents 1.0"),
    (b'{"specversion": "1.0", "type": "x"}', "lacks the CloudEvents attribute"),
])
def test_malformed_alerts_are_refused(raw, message):
    with pytest.raises(AlertFormatError, match=message):
        Alert.from_json(raw)
