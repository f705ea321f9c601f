"""Pretrained SAEs: SAELens's release registry (pretrained_saes.yaml), whether one can be had here, and loading it.

``load`` is the load_sae stage's work: ``release`` + ``sae_id`` load through
``SAE.from_pretrained`` (SAELens's pretrained_saes.yaml names the hub repository and
folder; the hub must be reachable or the SAE already in the local Hugging Face cache);
``path`` loads a directory saved by SAELens (``save_model`` / ``save_inference_model``,
as the train_sae stage's cache entries are) through ``SAE.load_from_disk``.

``check_source`` is the load_sae stage's pre-flight. It runs before any work and
raises a one-line ConfigError when the SAE cannot be loaded: a release or sae_id
SAELens does not know (with a "did you mean"), a local directory that is not an SAE
saved by SAELens, or a hub SAE that is neither in the local Hugging Face cache nor
downloadable (the release, the sae_id, why, and the offline alternatives).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from interp_pipeline.common.errors import ConfigError, Unobtainable, did_you_mean
from interp_pipeline.common.hf_hub_access import hub_unreachable_reason
from interp_pipeline.sae.config import SAESourceConfig
from interp_pipeline.pipeline.shapes import SAEShape
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

# What the error for an unobtainable pretrained SAE offers instead; one place, so it can follow the configs.
OFFLINE_OPTIONS = ("load an SAE saved on disk with +sae_source=local sae_source.path=/dir/with/cfg.json "
                   "(SAELens's save_model / save_inference_model format), or train one here "
                   "(+experiment=sae_toy_superposition)")
# What SAE.load_from_disk reads (SAELens's own format).
DISK_FILES = ("cfg.json", "sae_weights.safetensors")


def _directory() -> Mapping[str, Any]:
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    return get_pretrained_saes_directory()


def _ids_hint(ids: list[str]) -> str:
    return ", ".join(ids[:4]) + (f", ... ({len(ids)} in all)" if len(ids) > 4 else "")


def resolve(release: str, sae_id: str) -> tuple[str, str]:
    """(hub repo id, folder in it) for a release and sae_id; ConfigError for names SAELens does not know."""
    directory = _directory()
    if release not in directory:
        if "/" in release:  # SAELens also takes a hub repo id ('org/name') with the folder as sae_id
            return release, sae_id
        raise ConfigError("release", f"expected a release in SAELens's pretrained_saes.yaml ({len(directory)} known, "
                                     f"e.g. gpt2-small-res-jb) or a hub repo id ('org/name'), found '{release}'",
                          suggestion=did_you_mean(release, directory))
    lookup = directory[release]
    if sae_id not in lookup.saes_map:
        ids = list(lookup.saes_map)
        raise ConfigError("sae_id", f"expected an SAE of release '{release}' ({_ids_hint(ids)}), found '{sae_id}'",
                          suggestion=did_you_mean(sae_id, ids))
    return lookup.repo_id, lookup.saes_map[sae_id]


def _in_hub_cache(repo_id: str, folder: str) -> bool:
    """Some snapshot of ``repo_id`` in the local hub cache holds ``folder`` (a directory, or files named after it).

    The release's loader decides which files it fetches (SAELens's format, npz, .pt, ...), so
    this looks for the folder, not for particular files.
    """
    from huggingface_hub import constants

    snapshots = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    if not snapshots.is_dir():
        return False
    folder = folder.strip("/")
    for snapshot in snapshots.iterdir():
        target = snapshot / folder if folder else snapshot
        if target.is_dir() and any(target.iterdir()):
            return True
        if folder and target.parent.is_dir() and any(
                other.name.startswith(f"{target.name}.") for other in target.parent.iterdir()):
            return True  # a file named after the sae_id ('blocks.8.hook_resid_pre.safetensors')
    return False


def check_local(path: str) -> Path:
    directory = Path(os.path.expanduser(path))
    if not directory.is_dir():
        raise ConfigError("path", f"expected a directory holding an SAE saved by SAELens ({', '.join(DISK_FILES)}), "
                                  f"found {'a file' if directory.exists() else 'nothing'} at '{path}'")
    missing = [name for name in DISK_FILES if not (directory / name).is_file()]
    if missing:
        raise ConfigError("path", f"expected an SAE saved by SAELens in '{path}' ({', '.join(DISK_FILES)}), "
                                  f"found no {' and no '.join(missing)}",
                          suggestion="save one with sae.save_model(directory)")
    return directory


def check_pretrained(release: str, sae_id: str) -> None:
    repo_id, folder = resolve(release, sae_id)
    if _in_hub_cache(repo_id, folder):
        return
    reason = hub_unreachable_reason()
    if reason is None:
        return  # downloadable: SAE.from_pretrained fetches it
    raise Unobtainable("release", f"SAE release '{release}', sae_id '{sae_id}' ({repo_id}) cannot be had: not in "
                                  f"the local Hugging Face cache and the hub is unreachable ({reason})",
                       offline=OFFLINE_OPTIONS)


def check_source(settings: SAESourceConfig) -> None:
    """load_sae's pre-flight: exactly one of ``path`` and ``release`` + ``sae_id``, and that it can be had."""
    release, sae_id, path = settings.release, settings.sae_id, settings.path
    if path not in (None, ""):
        if release or sae_id:
            raise ConfigError("path", "expected either path (an SAE on disk) or release and sae_id (SAELens's "
                                      f"registry), found both: path='{path}', release='{release}'")
        check_local(str(path))
        return
    if not release:
        raise ConfigError("release", "expected release and sae_id (SAELens's pretrained SAEs, e.g. release="
                                     "gpt2-small-res-jb sae_id=blocks.8.hook_resid_pre) or path, found neither")
    if not sae_id:
        raise ConfigError("sae_id", f"expected the id of an SAE of release '{release}', found none")
    check_pretrained(str(release), str(sae_id))


def _cfg_shape(cfg_file: Path) -> SAEShape | None:
    """d_in, d_sae and hook from an SAE's cfg.json (SAELens 6 keeps the hook under ``metadata``)."""
    try:
        cfg = json.loads(cfg_file.read_text())
        hook = (cfg.get("metadata") or {}).get("hook_name") or cfg.get("hook_name")
        return SAEShape(int(cfg["d_in"]), int(cfg["d_sae"]) if cfg.get("d_sae") else None, hook)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # another format (a release's own loader reads it): the stage checks at run time


def shape_of_source(settings: SAESourceConfig, inputs: Mapping[str, Any]) -> SAEShape | None:
    """The SAE's widths and hook from its cfg.json, without loading it: a local directory's, or
    a pretrained one's in the local hub cache. None when neither is within reach."""
    release, sae_id, path = settings.release, settings.sae_id, settings.path
    if path not in (None, ""):
        return _cfg_shape(Path(os.path.expanduser(str(path))) / "cfg.json")
    from huggingface_hub import constants

    repo_id, folder = resolve(str(release), str(sae_id))
    snapshots = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    for cfg_file in sorted(snapshots.glob(f"*/{folder.strip('/')}/cfg.json")):
        return _cfg_shape(cfg_file)
    return None


def load(settings: SAESourceConfig, tracker: Tracker = NULL_TRACKER) -> Any:
    """An inference SAE (``sae_lens.SAE``) from SAELens's registry or from a directory, checked first; its
    source, architecture and hook as tags, its widths as metrics."""
    import warnings

    from sae_lens import SAE

    from interp_pipeline.common.devices import resolve_device

    check_source(settings)  # called from a notebook, the runner's pre-flight has not run
    device, dtype, fold = resolve_device(settings.device), settings.dtype, settings.fold_W_dec_norm
    if settings.path not in (None, ""):
        sae = SAE.load_from_disk(str(check_local(str(settings.path))), device=device, dtype=dtype,
                                 fold_W_dec_norm=fold)
        tags = {"sae.source": "local", "sae.path": str(settings.path)}
    else:
        with warnings.catch_warnings():
            # A hub repo id given as the release: SAELens suggests the release name, which we cannot act on here.
            warnings.filterwarnings("ignore", message=r"You are loading an SAE using the HuggingFace repo_id")
            sae = SAE.from_pretrained(str(settings.release), str(settings.sae_id), device=device, dtype=dtype,
                                      fold_W_dec_norm=fold)
        tags = {"sae.source": "pretrained", "sae.release": str(settings.release), "sae.id": str(settings.sae_id)}
    sae.eval()
    hook = getattr(sae.cfg.metadata, "hook_name", None)
    tracker.set_tags({**tags, "sae.architecture": sae.cfg.architecture(), **({"sae.hook": hook} if hook else {})})
    tracker.log_metrics({"d_in": float(sae.cfg.d_in), "d_sae": float(sae.cfg.d_sae)})
    return sae
