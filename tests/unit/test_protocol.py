"""Open Inference Protocol request/response bodies, without a server."""

from __future__ import annotations

import numpy as np
import pytest

from schemas import FeatureDef, FeatureSpec
from serving.binary import binary_response, decode_tensor, split_body, wants_binary
from serving.protocol import ProtocolError, infer_response, model_metadata, parse_infer

SPEC = FeatureSpec("m", (FeatureDef("age", "int"), FeatureDef("plan", "string"),
                         FeatureDef("score", "float", required=False)))


def tensor(name, datatype, data, shape=None):
    return {"name": name, "datatype": datatype, "shape": shape or [len(data)], "data": data}


def test_batch_with_nested_data_nulls_and_given_request_ids() -> None:
    body = {"id": "call-7", "parameters": {"request_ids": ["a", "b"]},
            "inputs": [tensor("age", "INT64", [[30], [41]], [2, 1]), tensor("plan", "BYTES", ["pro", None]),
                       tensor("score", "FP32", [0.5, None])]}
    request = parse_infer(body, SPEC)
    assert request.rows == [{"age": 30, "plan": "pro", "score": 0.5}, {"age": 41}]
    assert request.request_ids == ["a", "b"] and request.id == "call-7"
    response = infer_response("m", "3", request, "classification", np.array([0.9, 0.2]), None)
    assert response["model_version"] == "3" and response["id"] == "call-7"
    assert response["outputs"][1] == {"name": "predicted_class", "datatype": "BYTES", "shape": [2],
                                      "data": ["1", "0"]}
    assert response["parameters"] == {"request_ids": ["a", "b"]}


def test_single_row_takes_the_request_id_and_batches_get_fresh_ones() -> None:
    one = parse_infer({"id": "r1", "inputs": [tensor("age", "FP64", [3]), tensor("plan", "BOOL", [True])]}, SPEC)
    assert one.request_ids == ["r1"] and one.rows == [{"age": 3, "plan": "true"}]
    two = parse_infer({"inputs": [tensor("age", "FP64", [3, 4]), tensor("plan", "BYTES", ["a", "b"])]}, SPEC)
    assert len(set(two.request_ids)) == 2


@pytest.mark.parametrize(("body", "message"), [
    ([], "JSON object"),
    ({"inputs": []}, "non-empty 'inputs'"),
    ({"inputs": [tensor("height", "FP64", [1])]}, "unknown input 'height'"),
    ({"inputs": [tensor("age", "FP64", [1]), tensor("age", "FP64", [1])]}, "given twice"),
    ({"inputs": [tensor("age", "FLOAT", [1])]}, "not a protocol datatype"),
    ({"inputs": [tensor("age", "FP64", [1, 2], [1, 2])]}, "[N] or [N, 1]"),
    ({"inputs": [tensor("age", "FP64", [1, 2], [3])]}, "shape says 3 values but data has 2"),
    ({"inputs": [tensor("age", "FP64", ["x"])]}, "must be numbers"),
    ({"inputs": [tensor("age", "FP64", [], [0]), tensor("plan", "BYTES", [], [0])]}, "no rows"),
    ({"inputs": [tensor("age", "INT64", [10**400]), tensor("plan", "BYTES", ["a"])]}, "does not fit a float64"),
    ({"inputs": [tensor("age", "INT64", [1, -(10**400)]), tensor("plan", "BYTES", ["a", "b"])]},
     "does not fit a float64"),
    ({"inputs": [tensor("age", "INT64", [[1], [None], [10**400]], [3, 1]), tensor("plan", "BYTES", ["a"] * 3)]},
     "does not fit a float64"),
    ({"inputs": [tensor("age", "BYTES", ["1"])]}, "is numeric"),
    ({"inputs": [tensor("plan", "FP64", [1.0]), tensor("age", "FP64", [1])]}, "is categorical"),
    ({"inputs": [tensor("age", "FP64", [1])]}, "missing input(s) plan"),
    ({"inputs": [tensor("age", "FP64", [1, 2]), tensor("plan", "BYTES", ["a"])]}, "has 1 rows"),
    ({"parameters": {"request_ids": ["a"]}, "inputs": [tensor("age", "FP64", [1, 2]),
                                                       tensor("plan", "BYTES", ["a", "b"])]}, "2 non-empty"),
])
def test_bad_requests_say_what_is_wrong(body, message) -> None:
    with pytest.raises(ProtocolError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse_infer(body, SPEC)


def test_unknown_output_and_metadata() -> None:
    request = parse_infer({"outputs": [{"name": "logits"}],
                           "inputs": [tensor("age", "FP64", [1]), tensor("plan", "BYTES", ["a"])]}, SPEC)
    with pytest.raises(ProtocolError, match="unknown output"):
        infer_response("m", "1", request, "classification", np.array([0.5]), None)
    meta = model_metadata("m", ["1", "2"], SPEC, "regression", "2")
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [("age", "FP64"), ("plan", "BYTES"),
                                                                   ("score", "FP64")]
    assert meta["outputs"] == [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]


def stock_client_request(outputs: list[str] | None = None) -> tuple[bytes, int]:
    """A binary request as tritonclient (a stock v2 client) builds it by default: the reference encoder."""
    import tritonclient.http as triton

    age = triton.InferInput("age", [3], "INT32")
    age.set_data_from_numpy(np.array([30, 41, 52], dtype=np.int32))
    plan = triton.InferInput("plan", [3, 1], "BYTES")
    plan.set_data_from_numpy(np.array([[b"pro"], ["bäsic".encode()], [b""]], dtype=np.object_))
    score = triton.InferInput("score", [3], "FP64")
    score.set_data_from_numpy(np.array([0.5, np.nan, 2.0]))
    requested = [triton.InferRequestedOutput(name) for name in outputs] if outputs else None
    return triton.InferenceServerClient.generate_request_body([age, plan, score], outputs=requested,
                                                             request_id="call-9")


def test_binary_tensors_from_a_stock_client_round_trip() -> None:
    import tritonclient.http as triton

    body, header_length = stock_client_request()
    payload = split_body(body, str(header_length))
    request = parse_infer(payload, SPEC)
    assert request.rows == [{"age": 30, "plan": "pro", "score": 0.5}, {"age": 41, "plan": "bäsic"},
                            {"age": 52, "plan": "", "score": 2.0}]  # NaN is a missing value
    binary = wants_binary(payload)
    assert binary is True  # tritonclient asks for binary outputs when it names none
    scores = np.array([0.25, 0.75, np.nan])
    content, length = binary_response(infer_response("m", "4", request, "classification", scores, None), binary)
    result = triton.InferenceServerClient.parse_response_body(content, header_length=length)
    np.testing.assert_array_equal(result.as_numpy("score"), scores)
    assert result.as_numpy("predicted_class").tolist() == [b"0", b"1", b"0"]
    assert result.get_response()["model_version"] == "4" and result.get_response()["id"] == "call-9"


def test_binary_outputs_only_where_asked_and_broken_bodies_are_refused() -> None:
    body, header_length = stock_client_request(outputs=["score"])
    payload = split_body(body, str(header_length))
    assert wants_binary(payload) == {"score"}  # InferRequestedOutput asks for binary by default
    assert wants_binary({"inputs": [], "outputs": [{"name": "score"}]}) == set()
    for broken, message in [(body[:-3], "runs past the body"), (body + b"x", "1 bytes after"),
                            (b"{nope" + body[5:], "inference header is not JSON")]:
        with pytest.raises(ProtocolError, match=message):
            split_body(broken, str(header_length))
    with pytest.raises(ProtocolError, match="but the body has"):
        split_body(body, str(len(body) + 1))
    with pytest.raises(ProtocolError, match="whole number of FP64"):
        decode_tensor(b"\x00" * 9, "FP64", "score")
    with pytest.raises(ProtocolError, match="cut off"):
        decode_tensor(b"\x03\x00", "BYTES", "plan")
    with pytest.raises(ProtocolError, match="runs past its tensor"):
        decode_tensor(b"\x09\x00\x00\x00abc", "BYTES", "plan")
