"""The load_sae stage: a pretrained SAE from SAELens's registry, or one saved on disk.

``release`` + ``sae_id`` load through ``SAE.from_pretrained`` (SAELens's
pretrained_saes.yaml names the hub repository and folder; the hub must be reachable
or the SAE already in the local Hugging Face cache); ``path`` loads a directory
saved by SAELens (``save_model`` / ``save_inference_model``, as the train_sae stage's
cache entries are) through ``SAE.load_from_disk``. Pre-flight
(interp_pipeline.sae.pretrained) stops a run that cannot have its SAE before any work.

Nothing is stored in the stage cache: the SAE is cheaper to load again from where
it is than to copy, and the stage's cache key (its params) still pins everything
downstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from interp_pipeline.errors import ConfigError, did_you_mean, one_of
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "bfloat16", "float16", "float64")


def check_load_params(params: dict[str, Any]) -> None:
    from interp_pipeline.sae.pretrained import check_source

    for key, choices, default in (("device", DEVICES, "auto"), ("dtype", DTYPES, "float32")):
        value = params.get(key, default)
        if value not in choices:
            raise ConfigError(key, f"expected one of {one_of(choices)}, found {value!r}",
                              suggestion=did_you_mean(str(value), choices))
    check_source(params)


def _shape(params: dict[str, Any], inputs: Mapping[str, Any]) -> Any:
    from interp_pipeline.sae.pretrained import shape_of_source

    return shape_of_source(params)


@stage("load_sae", outputs=("sae",), cache=False, preflight=check_load_params, shape=_shape, metrics=("d_in", "d_sae"),
       version=1,
       summary=("d_in", "d_sae"))
def load_sae(
    release: str | None = None,
    sae_id: str | None = None,
    path: str | None = None,
    device: str = "auto",
    dtype: str = "float32",
    fold_W_dec_norm: bool = False,
    tracker: Tracker = NULL_TRACKER,
) -> Any:
    """An inference SAE (``sae_lens.SAE``) from SAELens's registry or from a directory; see the module doc."""
    import warnings

    from sae_lens import SAE

    from interp_pipeline.devices import resolve_device
    from interp_pipeline.sae.pretrained import check_local, check_source

    params = dict(release=release, sae_id=sae_id, path=path)
    check_source(params)  # called from a notebook, the runner's pre-flight has not run
    device = resolve_device(device)
    if path not in (None, ""):
        sae = SAE.load_from_disk(str(check_local(str(path))), device=device, dtype=dtype,
                                 fold_W_dec_norm=fold_W_dec_norm)
        tags = {"sae.source": "local", "sae.path": str(path)}
    else:
        with warnings.catch_warnings():
            # A hub repo id given as the release: SAELens suggests the release name, which we cannot act on here.
            warnings.filterwarnings("ignore", message=r"You are loading an SAE using the HuggingFace repo_id")
            sae = SAE.from_pretrained(str(release), str(sae_id), device=device, dtype=dtype,
                                      fold_W_dec_norm=fold_W_dec_norm)
        tags = {"sae.source": "pretrained", "sae.release": str(release), "sae.id": str(sae_id)}
    sae.eval()
    hook = getattr(sae.cfg.metadata, "hook_name", None)
    tracker.set_tags({**tags, "sae.architecture": sae.cfg.architecture(), **({"sae.hook": hook} if hook else {})})
    tracker.log_metrics({"d_in": float(sae.cfg.d_in), "d_sae": float(sae.cfg.d_sae)})
    return sae
