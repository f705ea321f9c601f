"""What conf/experiment/ offers: each experiment's one-line description (the first line of its
YAML header comment) and its ``offline:`` overrides, for --help, ``api.experiments()``, the
composer's check of a name, and pre-flight's message when an experiment's model cannot be had here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from interp_pipeline.common.errors import ConfigError, NotFound, Unobtainable, did_you_mean, one_of
from interp_pipeline.common.paths import conf_dir

_PACKAGE_LINE = "# @package _global_"


@dataclass(frozen=True)
class ExperimentInfo:
    name: str
    description: str      # '' when the file has no header comment
    offline: str | None   # overrides that run it without the hub


def _read(path: Path) -> ExperimentInfo:
    import yaml

    text = path.read_text()
    # The description is the header's first comment line (by convention one sentence, <= 100 characters).
    first = next((line for line in text.splitlines() if line.strip() and line.strip() != _PACKAGE_LINE), "")
    description = first.lstrip("#").strip() if first.startswith("#") else ""
    offline = (yaml.safe_load(text) or {}).get("offline")
    return ExperimentInfo(path.stem, description, offline)


def experiments(folder: Path | None = None) -> list[ExperimentInfo]:
    """The experiment configs that ship (``conf/experiment/*.yaml``), in name order."""
    return [_read(path) for path in sorted((folder or conf_dir() / "experiment").glob("*.yaml"))]


def check_experiment(name: str) -> None:
    """Raises :class:`NotFound`, naming the closest experiment or all of them, unless ``name`` is one."""
    folder = conf_dir() / "experiment"
    if not (folder / f"{name}.yaml").is_file():
        known = [path.stem for path in sorted(folder.glob("*.yaml"))]
        hint = did_you_mean(name, known)
        raise NotFound(f"no experiment '{name}' in {folder}" + (f" ({hint})" if hint else f" (experiments: {one_of(known)})"))


def describe_experiments() -> str:
    """--help's list: name, description, and the offline variant of hub experiments."""
    infos = experiments()
    width = max(len(info.name) for info in infos)
    lines = []
    for info in infos:
        lines.append(f"  {info.name:<{width}}  {info.description}")
        if info.offline:
            lines.append(f"  {'':<{width}}  offline: +experiment={info.name} {info.offline}")
    return "\n".join(lines)


def with_offline_suggestion(error: ConfigError, cfg: DictConfig, experiment: str) -> ConfigError:
    """An unobtainable model's or SAE's error suggesting this experiment's own offline variant
    (``+experiment=ioi_patching model=toy_ioi``) rather than the generic list, where it has one."""
    offline = cfg.get("offline")
    if not isinstance(error, Unobtainable) or not offline:
        return error
    return error.offering(f"python -m interp_pipeline +experiment={experiment} {offline}")
