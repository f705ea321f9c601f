"""Turn Hydra's and OmegaConf's composition errors into one line that names the config key."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from interp_pipeline.common.errors import cut_values, did_you_mean, one_of


def _fields(object_type: Any) -> list[str]:
    if isinstance(object_type, type) and dataclasses.is_dataclass(object_type):
        return [f.name for f in dataclasses.fields(object_type)]
    return []


def _from_omegaconf(error: Any) -> str | None:
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    if not isinstance(error, OmegaConfBaseException):
        return None
    key = getattr(error, "full_key", None) or getattr(error, "key", None) or "config"
    first = cut_values(str(error).splitlines()[0]) if str(error) else type(error).__name__
    object_type = getattr(error, "object_type", None)
    if isinstance(error, (ConfigKeyError, ConfigAttributeError)) and _fields(object_type):
        allowed = _fields(object_type)
        name = str(getattr(error, "key", key))
        hint = did_you_mean(name, allowed)
        line = f"{key}: expected a key of {object_type.__name__} ({one_of(allowed)}), found '{name}'"
        return f"{line} ({hint})" if hint else line
    if isinstance(error, (ConfigKeyError, ConfigAttributeError)) and "not in struct" in first:
        name = str(getattr(error, "key", key))
        parent = getattr(error, "parent_node", None)
        existing = [str(k) for k in parent.keys()] if hasattr(parent, "keys") else []
        hint = did_you_mean(name, existing)
        line = f"{key}: expected an existing key, found '{name}'"
        if hint:
            line += f" ({hint})"
        return f"{line}; to add a new key write +{key}=VALUE"
    value = re.match(r"Value '(.*)' of type '(.*)' could not be converted to (\w+)", first)
    if value:
        return f"{key}: expected {value.group(3).lower()}, found '{value.group(1)}' ({value.group(2)})"
    return f"{key}: {first}"


# Groups an experiment picks by the model (`- /ioi: ${model}` in its defaults list): per-model
# settings the user never names, so a missing option is spoken of as the model=... it follows.
PER_MODEL_GROUPS = ("ioi", "sae_setup", "sae_features_setup", "inspect_setup", "lens_setup", "tracing_setup")


# Hydra plugins behind an extra of ours (pyproject.toml): (group, option) -> (extra, the plugin's package).
PLUGIN_EXTRAS = {
    ("hydra/sweeper", "optuna"): ("optuna", "hydra-optuna-sweeper"),
    ("hydra/launcher", "ray"): ("ray", "hydra-ray-launcher"),
    ("hydra/launcher", "ray_cluster"): ("ray", "hydra-ray-launcher"),
    ("hydra/launcher", "submitit_local"): ("slurm", "hydra-submitit-launcher"),
    ("hydra/launcher", "submitit_slurm"): ("slurm", "hydra-submitit-launcher"),
}


def describe(error: BaseException) -> str:
    """The one line shown for a Hydra composition error (the traceback goes to the log)."""
    from hydra.errors import MissingConfigException

    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        group, _, option = str(error.missing_cfg_file).rpartition("/")
        options = list(error.options or [])
        if (group, option) in PLUGIN_EXTRAS and option not in options:
            extra, package = PLUGIN_EXTRAS[group, option]
            return (f"{group}={option}: needs {package}, which is not installed; "
                    f"install the '{extra}' extra: pip install 'interp_pipeline[{extra}]'")
        if group in PER_MODEL_GROUPS:
            return (f"model={option}: this experiment has per-model settings (conf/{group}/) for model= "
                    f"{one_of(options)}, found '{option}'; add conf/{group}/{option}.yaml to run it on that model")
        if group:
            line = f"{group}={option}: expected one of {one_of(options)}, found '{option}'"
            hint = did_you_mean(option, options)
            return f"{line} ({hint})" if hint else line
    # Hydra re-raises an error met while merging a config file as "In 'experiment/x': ..." with the
    # original as its context: name the file, and say what the command line would say.
    where = re.match(r"In '([^']+)': ", str(error))
    for candidate in (error.__cause__, error.__context__) if where else (error, error.__cause__):
        line = _from_omegaconf(candidate) if candidate is not None else None
        if line:
            return f"{_file_of(where.group(1))}: {line}" if where else line
    lines = [cut_values(line.strip()) for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines[:2]) or type(error).__name__


def _file_of(config_path: str) -> str:
    from interp_pipeline.config.safe_yaml import file_of

    return file_of(config_path) or config_path


def check_resolves(cfg: Any) -> None:
    """Every interpolation of the composed config resolves (``seed: ${seed}``, a missing ``${oc.env:X}``):
    else a ConfigError naming the file that sets the key, when one read for this run does, and the key."""
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError

    from interp_pipeline.common.errors import ConfigError
    from interp_pipeline.config.safe_yaml import file_defining

    try:
        for key in cfg:
            if key == "hydra" or OmegaConf.is_missing(cfg, key):  # Hydra resolves its own node, per job;
                continue  # a missing value is said by the check that needs it
            node = cfg._get_node(key)
            if OmegaConf.is_config(node):
                OmegaConf.to_container(node, resolve=True)
            else:
                cfg[key]  # noqa: B018 - reading a value resolves it
    except InterpolationResolutionError as error:
        key = str(getattr(error, "full_key", None) or "config")
        first = cut_values(str(error).splitlines()[0]) if str(error) else type(error).__name__
        where = file_defining(key)
        raise ConfigError(f"{where}: {key}" if where else key, f"could not resolve its interpolation: {first}") from None
