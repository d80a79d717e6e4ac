"""Mistakes a user makes get one clear sentence and exit 2, never a traceback or a silent opposite (no Kafka)."""

from __future__ import annotations

import pytest

from driftline.cli.main import main
from driftline.errors import ConfigError
from driftline.settings import load_settings
from serving.app import NodeOptions
from trainers.modelfile import parse_model_config


def one_sentence(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("driftline: error: ") and err.count("\n") == 1, err
    return err


def test_an_unknown_log_level_is_refused_by_name(capsys):
    assert main(["--log-level", "foo", "config", "show"]) == 2
    assert "log_level 'foo' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL" in one_sentence(capsys)


def test_profile_to_a_path_that_cannot_be_written_says_so(tmp_path, capsys):
    data = tmp_path / "ref.csv"
    data.write_text("x\n" + "\n".join(str(i) for i in range(50)) + "\n")
    target = tmp_path / "no-such-folder" / "p.json"
    assert main(["profile", str(data), "--model", "m", "-o", str(target)]) == 2
    assert f"cannot write profile {target}" in one_sentence(capsys)


@pytest.mark.parametrize("key", ["warm_start", "train_since_change"])
def test_a_quoted_false_in_a_model_file_is_refused_not_read_as_true(key):
    base = {"name": "m", "pipeline": "logistic_regression"}
    assert getattr(parse_model_config({**base, key: True}), key) is True
    assert getattr(parse_model_config({**base, key: False}), key) is False
    assert getattr(parse_model_config(base), key) is False
    with pytest.raises(ConfigError, match=f"{key} must be true or false"):
        parse_model_config({**base, key: "false"})


def test_serving_options_are_settings_validated_with_the_field_named():
    settings = load_settings(env={"DRIFTLINE_SERVE_MODELS": "loans, churn", "DRIFTLINE_SERVE_EMIT": "ack",
                                  "DRIFTLINE_SERVE_MAX_BODY_BYTES": "2048", "DRIFTLINE_SERVE_ACCESS_LOG": "no"})
    options = NodeOptions.from_settings(settings)
    assert (options.models, options.emit_mode, options.max_body_bytes, options.access_log) == (
        ["loans", "churn"], "ack", 2048, False)
    assert NodeOptions.from_settings(load_settings(env={})).models is None
    with pytest.raises(ConfigError, match="DRIFTLINE_SERVE_MAX_BODY_BYTES must be an integer"):
        load_settings(env={"DRIFTLINE_SERVE_MAX_BODY_BYTES": "lots"})
    with pytest.raises(ConfigError, match="serve_emit must be async or ack"):
        load_settings(env={"DRIFTLINE_SERVE_EMIT": "later"})


def test_a_cluster_that_does_not_answer_is_named_with_its_address(tmp_path):
    """A service's first start (create_topics) against an address nobody listens on: where we looked, and
    what to do, in one sentence (it said "cannot list topics: Failed to get metadata")."""
    from driftline.broker import free_port
    from driftline.errors import BrokerError
    from driftline.kafka_clients import forget_refusal
    from driftline.topics import create_topics

    forget_refusal()  # as a command starts: nothing refused us yet

    address = f"127.0.0.1:{free_port()}"
    settings = load_settings(env={}, state_dir=str(tmp_path), bootstrap_servers=address)
    with pytest.raises(BrokerError) as refused:
        create_topics(settings, timeout=1.0)
    assert str(refused.value).startswith(f"no Kafka broker answers at {address} (")
    assert "driftline broker up" in str(refused.value)


def test_a_refusal_met_before_is_not_blamed_for_a_later_error(capsys):
    """A refusal of our credentials is process state; an earlier command's (a test's, a notebook's) must not
    explain this command's error, and a bad config value is never a credentials problem (CI saw both)."""
    from confluent_kafka import KafkaError

    from driftline.kafka_clients import _on_client_error, refusal

    _on_client_error(KafkaError(KafkaError._AUTHENTICATION, "SASL authentication failed"))
    assert refusal() is not None
    assert main(["--log-level", "foo", "config", "show"]) == 2
    assert "log_level 'foo'" in one_sentence(capsys)
    _on_client_error(KafkaError(KafkaError._AUTHENTICATION, "SASL authentication failed"))
    assert main(["config", "show"]) == 0
    assert refusal() is None, "each command starts with none"


def test_a_connection_lost_during_the_sasl_handshake_is_no_refusal():
    """librdkafka's words when a SASL client's broker goes away mid-handshake (seen in CI): an outage, not a
    refusal of our credentials; a real refusal still is one."""
    from confluent_kafka import KafkaError

    from driftline.kafka_clients import _on_client_error, forget_refusal, refusal

    forget_refusal()
    _on_client_error(KafkaError(KafkaError._AUTHENTICATION, "GroupCoordinator: SASL SCRAM-SHA-256 mechanism "
                                "handshake failed: Local: Broker transport failure: broker's supported mechanisms: "
                                "(n/a) (after 0ms in state DOWN)"))
    assert refusal() is None
    _on_client_error(KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: Authentication failed "
                                "during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256"))
    assert "refused our credentials" in (refusal() or "")
    forget_refusal()
