"""Hypothesis throws malformed v2 requests at a real node: every answer is a JSON 4xx, the node lives on."""

from __future__ import annotations

import signal

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.serving_helpers import publish_first_version, start_node

pytestmark = pytest.mark.integration

FEATURES = ["salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan"]
DATATYPES = ["FP64", "FP32", "INT64", "INT32", "BOOL", "BYTES", "UINT8", "FP16", "nonsense", ""]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.text(max_size=8),
                    st.floats(allow_nan=True, allow_infinity=True))
tensors = st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(FEATURES), st.text(max_size=6)),
     "datatype": st.sampled_from(DATATYPES),
     "shape": st.one_of(st.lists(st.integers(-3, 10**12), max_size=3), st.text(max_size=3)),
     "data": st.one_of(st.lists(scalars, max_size=6), scalars, st.lists(st.lists(scalars, max_size=3), max_size=3))},
    optional={"parameters": st.dictionaries(st.text(max_size=5), scalars, max_size=2)})
bodies = st.one_of(
    st.binary(max_size=200),                                              # not JSON at all
    scalars.map(lambda v: _dumps(v)),                                     # JSON, but not an object
    st.fixed_dictionaries({"inputs": st.lists(tensors, max_size=10)},
                          optional={"id": scalars, "outputs": st.lists(st.dictionaries(st.text(max_size=5), scalars)),
                                    "parameters": st.dictionaries(st.text(max_size=8), scalars, max_size=3)})
    .map(lambda b: _dumps(b)),
)


def _dumps(body: object) -> bytes:
    """JSON, with NaN/Infinity written as JavaScript would (orjson would write null)."""
    import json

    return json.dumps(body, allow_nan=True).encode()


def test_malformed_requests_get_json_4xx_and_never_crash_the_node(settings):
    signed = settings.replace(signing_key="serving-fuzz-secret-key")
    publish_first_version(signed)
    node, url = start_node(signed, "--max-body-bytes", "65536")
    statuses: dict[int, int] = {}
    try:
        with httpx.Client(timeout=10) as client:
            @settings_for_fuzz
            @given(body=bodies, model=st.sampled_from(["loans", "loans", "nope", "../x"]))
            def one(body: bytes, model: str) -> None:
                answer = client.post(f"{url}/v2/models/{model}/infer", content=body,
                                     headers={"content-type": "application/json"})
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                assert answer.status_code == 200 or 400 <= answer.status_code < 500, (answer.status_code, body)
                if answer.status_code != 200:
                    assert isinstance(answer.json()["error"], str) and answer.json()["error"]

            one()
            assert client.get(f"{url}/v2/health/live").status_code == 200, "the node is alive after the fuzz"
            scrape = client.get(f"{url}/metrics").text
    finally:
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=60) == 0
    counted = sum(float(line.rsplit(" ", 1)[1]) for line in scrape.splitlines()
                  if line.startswith("driftline_serving_requests_total{") and 'status="4' in line)
    assert counted == sum(n for status, n in statuses.items() if 400 <= status < 500), (counted, statuses)


settings_for_fuzz = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
