"""The MLflow pyfunc wrapper of a logged model or SAE (``mlflow.pyfunc.load_model``).

Logged as "models from code" (this file, not a pickled object), with the weights as
the codec wrote them (safetensors and a JSON config) as its artifact: loading it
runs the same codec as the stage cache, so nothing is unpickled. Needs
interp_pipeline installed where it is loaded.

``predict``: token ids ``[batch, pos]`` -> logits for a transformer; activations
``[batch, d_in]`` -> feature activations (``encode``) for an SAE (``params={"sae":
name}`` picks one of several trained in one pass). ``unwrap_python_model().module``
is the HookedTransformer or SAE itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class StageOutputModel(PythonModel):
    module: Any = None

    def load_context(self, context: Any) -> None:
        from interp_pipeline.storage.cache_codecs import codec_named

        self.module = codec_named(context.model_config["codec"]).load(Path(context.artifacts["weights"]))

    # np.ndarray: a hint MLflow takes as "no signature to infer" (none, or Any, makes it warn).
    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        import torch

        x = torch.as_tensor(np.asarray(model_input))
        module = self.module
        if isinstance(module, Mapping):
            module = module[(params or {}).get("sae") or next(iter(module))]
        with torch.no_grad():
            if hasattr(module, "encode"):
                return module.encode(x.float()).cpu().numpy()
            return module(x.long()).cpu().numpy()


mlflow.models.set_model(StageOutputModel())
