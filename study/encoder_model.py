"""A trial's trained model as MLflow serves it (``mlflow.pyfunc``, "models from code"): images in,
codes out, through the project's own loader (``trainables.load_model``: weights read with
``weights_only=True``, nothing unpickled).

    model = mlflow.pyfunc.load_model("models:/<model id>")   # or "runs:/<run id>/..." as listed
    codes = model.predict(images)   # uint8 (N, C, 64, 64) -> float64 (N, latent)

MLflow copies this file into each logged model (``study.mlflow_model``); it runs at load time.
"""

from __future__ import annotations

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class Encoder(PythonModel):
    # The model's signature states its tensors; MLflow's type-hint check (which warns on every
    # load without hints it supports) is off, as MLflow turns it off for its own ChatModel.
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:  # noqa: ANN001
        from trainables import load_model

        # A probe loads its upstream model from the same tracking store.
        self.model = load_model(context.artifacts["model"], tracking_uri=mlflow.get_tracking_uri())

    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        return self.model.encode(np.asarray(model_input))


mlflow.models.set_model(Encoder())
