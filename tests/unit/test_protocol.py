"""Open Inference Protocol request/response bodies, without a server."""

from __future__ import annotations

import numpy as np
import pytest

from schemas import FeatureDef, FeatureSpec
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
