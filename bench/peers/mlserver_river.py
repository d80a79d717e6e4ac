"""An MLServer 1.7 custom runtime serving a pickled river pipeline: the peer of a driftline node in
``bench/serve.py --peers``. Runs in the peers' venv (``make peers``), never imported by driftline.

It does what the node does per request and no more: one dict per row from the
request's named FP64 tensors, ``predict_proba_one`` per row, the positive
class's probability back as an FP64 tensor. (No prediction events: MLServer
has no Kafka emitter in its request path, which favours it.)
"""

from __future__ import annotations

import pickle

from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


class RiverRuntime(MLModel):
    async def load(self) -> bool:
        uri = self.settings.parameters.uri if self.settings.parameters else None
        if not uri:
            raise ValueError("model-settings.json needs parameters.uri: the pickled river pipeline")
        with open(uri, "rb") as source:  # written by bench/serve.py from a verified, signed artifact
            self.estimator = pickle.load(source)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        columns = {tensor.name: list(tensor.data.root) for tensor in payload.inputs}
        rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        proba = self.estimator.predict_proba_one
        scores = [float(proba(row).get(True, 0.0)) for row in rows]
        return InferenceResponse(model_name=self.name, model_version=self.version, id=payload.id,
                                 outputs=[ResponseOutput(name="score", datatype="FP64", shape=[len(scores)],
                                                         data=scores)])
