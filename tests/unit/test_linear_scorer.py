"""The frozen linear form of a river pipeline scores every plain row as river does, and steps aside otherwise.

river itself is the independent computation: the same trained pipeline's
``predict_proba_one`` / ``predict_one`` on the same rows.
"""

from __future__ import annotations

import copy
import pickle
import random

import numpy as np
import pytest

from driftline.linear import LinearScorer
from driftline.modeling import RiverModel


def trained(pipeline: str, numeric: tuple[str, ...], categorical: tuple[str, ...], seed: int,
            rows: int = 300) -> tuple[RiverModel, list[dict]]:
    rng = random.Random(seed)
    data = [{**{n: rng.gauss(i, 1 + i) for i, n in enumerate(numeric)},
             **{c: rng.choice(["a", "b", "c", "d"][: 2 + i]) for i, c in enumerate(categorical)}} for _ in range(rows)]
    if pipeline == "logistic_regression":
        labels = [str(int(sum(v for v in r.values() if isinstance(v, float)) + (r.get("c0") == "a") > 0.5))
                  for r in data]
        task = "classification"
    else:
        labels = [sum(v for v in r.values() if isinstance(v, float)) + 3 * (r.get("c0") == "b") for r in data]
        task = "regression"
    model = RiverModel(task, pipeline, numeric, categorical)
    model.learn(data, labels)
    return model, data


def river_scores(model: RiverModel, rows: list[dict]) -> np.ndarray:
    if model.task == "regression":
        return np.array([model.estimator.predict_one(x) or 0.0 for x in rows])
    return np.array([model.estimator.predict_proba_one(x).get(True, 0.0) for x in rows])


@pytest.mark.parametrize("pipeline", ["logistic_regression", "linear_regression"])
@pytest.mark.parametrize(("numeric", "categorical"), [(("x0", "x1", "x2"), ()), ((), ("c0", "c1")),
                                                      (("x0", "x1"), ("c0", "c1", "c2"))])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plain_rows_score_as_river_scores_them(pipeline, numeric, categorical, seed) -> None:
    model, data = trained(pipeline, numeric, categorical, seed)
    rng = random.Random(seed + 100)
    rows = data[:50] + [{**r, **{c: "never-seen" for c in categorical if rng.random() < 0.3},
                         **{n: rng.choice([0, -7, 10**6]) for n in numeric if rng.random() < 0.3},
                         "extra": "ignored"} for r in data[50:120]]
    scorer = LinearScorer.compile(model.estimator, numeric, categorical)
    assert scorer is not None
    ours = scorer.scores(rows)
    assert ours is not None
    np.testing.assert_allclose(ours, river_scores(model, rows), rtol=1e-12, atol=1e-12)
    scores, classes = model.predict(rows)  # the model's own predict takes the compiled path
    assert classes is None
    np.testing.assert_allclose(scores, river_scores(model, rows), rtol=1e-12, atol=1e-12)


def test_rows_that_are_not_plain_go_to_river() -> None:
    model, data = trained("logistic_regression", ("x0", "x1"), ("c0",), 3)
    scorer = LinearScorer.compile(model.estimator, model.numeric, model.categorical)
    assert scorer is not None
    odd_rows = [{"x0": 1.0, "c0": "a"},  # a feature missing: river's Select raises, so must ours
                {"x0": True, "x1": 1.0, "c0": "a"},  # a bool
                {"x0": np.float64(1.0), "x1": 1.0, "c0": "a"},  # a numpy scalar
                {"x0": 1.0, "x1": 1.0, "c0": 3},  # a number as a category
                {"x0": None, "x1": 1.0, "c0": "a"}]
    for row in odd_rows:
        assert scorer.scores([data[0], row]) is None
    scores, _ = model.predict([odd_rows[2]])  # river scores what it can
    np.testing.assert_allclose(scores, river_scores(model, [odd_rows[2]]), rtol=1e-12)


def test_other_pipelines_and_settings_are_not_compiled() -> None:
    tree, _ = trained("logistic_regression", ("x0",), (), 4)
    tree.estimator = RiverModel("classification", "hoeffding_adaptive_tree", ("x0",), ()).estimator
    assert LinearScorer.compile(tree.estimator, ("x0",), ()) is None
    model, _ = trained("logistic_regression", ("x0", "x1"), (), 5)
    scaler = list(model.estimator.steps.values())[1]
    scaler.with_std = False
    assert LinearScorer.compile(model.estimator, ("x0", "x1"), ()) is None
    model, _ = trained("logistic_regression", ("x0", "x1"), (), 6)
    list(model.estimator.steps.values())[-1]._weights["x0"] = float("nan")
    assert LinearScorer.compile(model.estimator, ("x0", "x1"), ()) is None
    assert LinearScorer.compile(model.estimator, ("x0",), ()) is None  # not the features it selects


def test_learning_again_recompiles_and_pickles_carry_no_scorer() -> None:
    model, data = trained("logistic_regression", ("x0", "x1"), ("c0",), 7)
    artifact = pickle.dumps(model)
    before, _ = model.predict(data[:20])
    assert pickle.dumps(model) == artifact  # predicting (and compiling) leaves the artifact's bytes alone
    clone = copy.deepcopy(model)  # a trainer's warm start
    clone.learn(data[::-1], ["1"] * len(data))
    after, _ = clone.predict(data[:20])
    np.testing.assert_allclose(after, river_scores(clone, data[:20]), rtol=1e-12)
    assert not np.allclose(before, after)
    np.testing.assert_array_equal(model.predict(data[:20])[0], before)  # the champion is untouched
    loaded = pickle.loads(artifact)
    np.testing.assert_array_equal(loaded.predict(data[:20])[0], before)
