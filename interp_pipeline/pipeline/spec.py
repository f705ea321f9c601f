"""The pipeline format: read ``pipelines/NAME.yaml`` against the composed config and validate it.

A pipeline file holds ``stages:``, a list of ``{name, fn, inputs, params}``. ``params``
usually interpolates a config group (``params: ${model}``), so it is resolved against
the experiment's composed config. Everything that can be checked without running
anything is checked here, and each problem is one :class:`ConfigError` naming its key.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from interp_pipeline.config.settings import ROOT_DEFAULTS, settings_of
from interp_pipeline.common.errors import ConfigError, did_you_mean, one_of
from interp_pipeline.common.paths import pipelines_dir
from interp_pipeline.pipeline.registry import StageDef, registered_stages

STAGE_KEYS = ("name", "fn", "inputs", "params", "description")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WHOLE_INTERPOLATION = re.compile(r"^\$\{([A-Za-z0-9_.]+)\}$")


@dataclass(frozen=True)
class InputRef:
    stage: str
    output: str


@dataclass(frozen=True)
class StageSpec:
    name: str
    definition: StageDef
    inputs: dict[str, InputRef] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    # Where the params come from, for error messages: "model" for `params: ${model}`.
    params_key: str = ""

    @property
    def cacheable(self) -> bool:
        return self.definition.cacheable(self.params)


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    source: str
    stages: tuple[StageSpec, ...]  # in execution order

    def stage(self, name: str) -> StageSpec:
        return next(s for s in self.stages if s.name == name)

    def downstream_of(self, name: str) -> set[str]:
        """``name`` and every stage that depends on it, directly or not."""
        found = {name}
        for spec in self.stages:  # execution order: producers come before consumers
            if any(ref.stage in found for ref in spec.inputs.values()):
                found.add(spec.name)
        return found


def find_pipeline_file(name: str) -> Path:
    as_path = Path(name).expanduser()
    if as_path.suffix in (".yaml", ".yml"):
        if as_path.is_file():
            return as_path.resolve()
        raise ConfigError("pipeline", f"expected a pipeline file, found no file at '{name}'")
    candidate = pipelines_dir() / f"{name}.yaml"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in pipelines_dir().glob("*.yaml"))
    raise ConfigError(
        "pipeline",
        f"expected one of {one_of(known)} (files in {pipelines_dir()}), found '{name}'",
        suggestion=did_you_mean(name, known),
    )


def load_pipeline(cfg: DictConfig) -> PipelineSpec:
    """Read the pipeline ``cfg.pipeline`` names, resolve its params against ``cfg`` and validate it."""
    if OmegaConf.is_missing(cfg, "pipeline"):
        raise ConfigError(
            "pipeline", "expected a pipeline name; pick an experiment with +experiment=NAME"
        )
    path = find_pipeline_file(cfg.pipeline)
    label = f"pipelines/{path.name}" if path.parent == pipelines_dir() else str(path)
    raw = OmegaConf.load(path)
    if not isinstance(raw, DictConfig) or "stages" not in raw:
        raise ConfigError(label, "expected a mapping with a 'stages:' list")
    # Resolve the stages inside the experiment's config so `${model}` and friends work.
    scope = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    OmegaConf.set_struct(scope, False)
    scope["__pipeline__"] = raw.stages
    raw_stages = OmegaConf.to_container(raw.stages, resolve=False)
    origins = [_origins(entry) for entry in raw_stages] if isinstance(raw_stages, list) else []
    try:
        stages = OmegaConf.to_container(scope["__pipeline__"], resolve=True)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", "") or "stages"
        raise ConfigError(f"{label}: {key.replace('__pipeline__', 'stages')}", str(error).splitlines()[0]) from error
    _require_selected_groups(stages, origins, label)
    root = {key: cfg[key] for key in ROOT_DEFAULTS if key in cfg}
    return parse_stages(stages, name=path.stem, label=label, origins=origins, root=root)


def _require_selected_groups(stages: Any, origins: list[dict[str, str]], label: str) -> None:
    """``params: ${sae}`` with no ``sae`` group selected would hand the stage nothing, silently."""
    for entry, origin in zip(stages if isinstance(stages, list) else [], origins):
        group = origin.get("params")
        if group and isinstance(entry, dict) and entry.get("params") is None:
            top = group.split(".")[0]
            raise ConfigError(group, f"expected a value: stage '{entry.get('name')}' of {label} reads its params "
                                     f"from it (params: ${{{group}}}), found none selected",
                              suggestion=f"add '- /{top}: default' to the experiment's defaults, or pick one "
                                         f"with {top}=NAME")


def _origins(entry: Any) -> dict[str, str]:
    """Config keys that a stage's fields interpolate whole (`params: ${model}` -> "model"),
    so errors can name the key the user wrote rather than the pipeline file."""
    found = {}
    for field_name in ("fn", "params"):
        value = entry.get(field_name) if isinstance(entry, dict) else None
        match = _WHOLE_INTERPOLATION.match(value) if isinstance(value, str) else None
        if match:
            found[field_name] = match.group(1)
    return found


def parse_stages(
    stages: Any, *, name: str, label: str, origins: list[dict[str, str]] | None = None,
    root: Mapping[str, Any] | None = None,
) -> PipelineSpec:
    """Validate a plain list of stage mappings and order it; see the module docstring. ``root``: the
    experiment's seed (ROOT_DEFAULTS' keys), for the schemas' ``${seed}`` defaults."""
    if not isinstance(stages, list) or not stages:
        raise ConfigError(f"{label}: stages", f"expected a non-empty list, found {stages!r}")
    known = registered_stages()
    origins = list(origins or []) + [{}] * len(stages)
    entries: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for index, entry in enumerate(stages):
        key = f"{label}: stages[{index}]"
        origin = origins[index]
        if not isinstance(entry, Mapping):
            raise ConfigError(key, f"expected a mapping with {', '.join(STAGE_KEYS)}, found {entry!r}")
        for field_name in entry:
            if field_name not in STAGE_KEYS:
                raise ConfigError(
                    f"{key}.{field_name}",
                    f"expected one of {', '.join(STAGE_KEYS)}",
                    suggestion=did_you_mean(str(field_name), STAGE_KEYS),
                )
        stage_name = entry.get("name")
        if not isinstance(stage_name, str) or not _NAME.match(stage_name):
            raise ConfigError(f"{key}.name", f"expected an identifier, found {stage_name!r}")
        if stage_name in entries:
            raise ConfigError(f"{key}.name", f"expected a unique stage name, found '{stage_name}' twice")
        fn = entry.get("fn")
        if fn not in known:
            raise ConfigError(
                origin.get("fn", f"{key}.fn"),
                f"expected a registered stage function, found {fn!r} (registered: {one_of(known)})",
                suggestion=did_you_mean(str(fn), known),
            )
        entries[stage_name] = (key, entry)

    specs = {}
    for (stage_name, (key, entry)), origin in zip(entries.items(), origins):
        specs[stage_name] = _parse_stage(stage_name, key, entry, entries, known, origin.get("params", f"{key}.params"),
                                         root)
    order = _execution_order(specs, label)
    return PipelineSpec(name=name, source=label, stages=tuple(specs[n] for n in order))


def _parse_stage(
    stage_name: str,
    key: str,
    entry: Mapping[str, Any],
    entries: Mapping[str, tuple[str, Mapping[str, Any]]],
    known: Mapping[str, StageDef],
    params_key: str,
    root: Mapping[str, Any] | None = None,
) -> StageSpec:
    definition = known[entry["fn"]]
    raw_inputs = entry.get("inputs") or {}
    params = entry.get("params") or {}
    if not isinstance(raw_inputs, Mapping):
        raise ConfigError(f"{key}.inputs", f"expected a mapping of argument: stage[.output], found {raw_inputs!r}")
    if not isinstance(params, Mapping):
        raise ConfigError(f"{key}.params", f"expected a mapping, found {params!r}")

    inputs: dict[str, InputRef] = {}
    for arg, ref in raw_inputs.items():
        ref_key = f"{key}.inputs.{arg}"
        if not isinstance(ref, str):
            raise ConfigError(ref_key, f"expected 'stage' or 'stage.output', found {ref!r}")
        producer, _, output = ref.partition(".")
        if producer == stage_name:
            raise ConfigError(ref_key, f"expected another stage's output, found the stage itself ('{ref}')")
        if producer not in entries:
            raise ConfigError(
                ref_key,
                f"expected the output of a stage in this pipeline ({one_of(entries)}), found '{ref}'",
                suggestion=did_you_mean(producer, entries),
            )
        produced = known[entries[producer][1]["fn"]].outputs
        if not output:
            if len(produced) != 1:
                raise ConfigError(
                    ref_key, f"stage '{producer}' has outputs {', '.join(produced)}: name one, as '{producer}.OUTPUT'"
                )
            output = produced[0]
        elif output not in produced:
            raise ConfigError(
                ref_key,
                f"expected an output of stage '{producer}' ({', '.join(produced)}), found '{output}'",
                suggestion=did_you_mean(output, produced),
            )
        inputs[str(arg)] = InputRef(producer, output)

    _check_signature(definition, key, inputs, params, params_key)
    return StageSpec(stage_name, definition, inputs, _resolved(definition, params, params_key, root), params_key)


def _resolved(definition: StageDef, params: Mapping[str, Any], params_key: str,
              root: Mapping[str, Any] | None) -> dict[str, Any]:
    """The stage's complete settings (its schema's defaults filled in, checked), as the plain mapping the cache
    key, MLflow's params and the stage call are made from: a default is part of what a result was computed with."""
    if definition.config is None:
        return dict(params)
    try:
        return settings_of(definition.config, params, root=root)
    except ConfigError as error:
        raise error.under(params_key) from None


def _check_signature(
    definition: StageDef, key: str, inputs: Mapping[str, InputRef], params: Mapping[str, Any], params_key: str
) -> None:
    """Bind inputs to the function's inputs and params to its settings' schema, Kedro-style, before anything runs."""
    signature = definition.signature
    accepted_inputs = definition.input_names()
    settings = definition.setting_names()
    for arg in inputs:
        if arg in params:
            raise ConfigError(f"{key}.inputs.{arg}", "is given both as an input and as a param")
        if arg not in accepted_inputs:
            raise ConfigError(
                f"{key}.inputs.{arg}",
                f"expected an input of {definition.name}() ({one_of(accepted_inputs)}), found '{arg}'",
                suggestion=did_you_mean(str(arg), accepted_inputs),
            )
    for arg in params:
        if arg not in settings:
            where = f"a setting of {definition.name}() ({one_of(settings)})" if settings else \
                f"no params ({definition.name}() has no settings)"
            raise ConfigError(f"{params_key}.{arg}", f"expected {where}, found '{arg}'",
                              suggestion=did_you_mean(str(arg), settings))
    for arg in accepted_inputs:
        parameter = signature.parameters[arg]
        if parameter.default is inspect.Parameter.empty and arg not in inputs:
            raise ConfigError(f"{key}.inputs.{arg}", f"{definition.name}() requires it: expected an input, found none")


def _execution_order(specs: Mapping[str, StageSpec], label: str) -> list[str]:
    """Topological order that keeps the file's order where dependencies allow; names any cycle."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = path[path.index(name):] + [name]
            raise ConfigError(f"{label}: stages", f"expected no cycles, found {' -> '.join(cycle)}")
        state[name] = "visiting"
        for ref in specs[name].inputs.values():
            visit(ref.stage, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in specs:
        visit(name, [])
    return order
