"""Generated data for the demo, tests and benchmarks: river's synthetic streams as numpy columns.

Nothing is downloaded. ``agrawal`` gives loan applications (nine features)
and a label from one of river's ten Agrawal classification functions:
changing the function is a known *concept* drift, scaling a feature a known
*covariate* shift.
"""

from __future__ import annotations

import numpy as np

AGRAWAL_FEATURES = ("salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan")


def agrawal(rows: int, *, function: int = 0, seed: int = 1,
            salary_scale: float = 1.0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(feature columns, boolean labels) for ``rows`` rows of Agrawal(``function``)."""
    from river.datasets import synth

    stream = synth.Agrawal(classification_function=function, seed=seed)
    xs, ys = zip(*stream.take(rows), strict=True) if rows else ((), ())
    columns = {name: np.array([x[name] for x in xs], dtype=np.float64) for name in AGRAWAL_FEATURES}
    columns["salary"] = columns["salary"] * salary_scale
    return columns, np.array(ys, dtype=bool)
