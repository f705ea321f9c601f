"""The stage registry: ``@stage`` declares a plain function as a pipeline stage.

Modelled on Kedro's ``node``: a stage is a function with named outputs. Its inputs
are its parameters whose names a pipeline wires to earlier outputs. Its settings are
one object, the schema dataclass the stage is bound to (``@stage(config=TMSConfig)``),
received as the parameter ``settings``: the registered function takes the settings'
keys as keyword arguments and resolves them through interp_pipeline.config.settings
(defaults, types, ranges), so the runner and a notebook call it alike:
``train_tms(steps=500)``. A parameter named ``tracker`` receives the runner's tracker
(a null one when called from a notebook), which is how a stage logs metrics and
figures without importing mlflow.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from interp_pipeline.config.settings import settings_object
from interp_pipeline.common.errors import ConfigError
from interp_pipeline.common.plugins import load_plugins

TRACKER_PARAM = "tracker"
# A parameter named `workdir` receives a directory that is the same for every attempt
# at the same cache key (checkpoints to resume from); it is removed once the result is stored.
WORKDIR_PARAM = "workdir"
# A parameter named `stage_dir` receives a directory kept for good beside the cache entry of
# its key: for outputs too big to copy into the entry (an activation store written in place).
STAGE_DIR_PARAM = "stage_dir"
# A parameter named `cache_key` receives the stage's cache key (to record in what it writes).
CACHE_KEY_PARAM = "cache_key"
INJECTED_PARAMS = (TRACKER_PARAM, WORKDIR_PARAM, STAGE_DIR_PARAM, CACHE_KEY_PARAM)
# The parameter that receives a stage's resolved settings (an instance of its ``config``).
SETTINGS_PARAM = "settings"


@dataclass(frozen=True)
class StageDef:
    name: str
    fn: Callable[..., Any]
    outputs: tuple[str, ...]
    # The schema dataclass of the stage's settings; None for a stage that has none.
    config: type | None = None
    # False: never stored (cheap to recompute, e.g. a model rebuilt from its config);
    # its cache key is still computed so everything downstream stays cacheable.
    # A callable decides from the params (a model is stored when trained, not when downloaded).
    cache: bool | Callable[[dict[str, Any]], bool] = True
    # Bump when the function's results change for the same parameters, so old
    # cache entries stop matching.
    version: int = 1
    # Called with the stage's resolved settings before any stage runs (pre-flight); raises
    # ConfigError with a key relative to the params, e.g. "cfg.n_layers".
    preflight: Callable[[Any], None] | None = None
    # Pre-flight against the inputs' shapes (interp_pipeline.pipeline.preflight):
    # check_shapes(settings, input_shapes) raises ConfigError; shape(settings, input_shapes)
    # says what the output will look like (a ModelShape, TokensShape, ...) without running.
    # Every callable here takes the resolved settings object (``config``'s instance).
    check_shapes: Callable[[Any, Mapping[str, Any]], None] | None = None
    shape: Callable[[Any, Mapping[str, Any]], Any] | None = None
    # The metric names the stage can log (glob patterns), or a function of its settings that
    # gives them, so expect: keys are checked before the run. None: undeclared, not checked.
    metrics: tuple[str, ...] | Callable[[Any], Iterable[str]] | None = None
    # Metric names (glob patterns) for the one-line summary after the stage; default: the first few.
    summary: tuple[str, ...] = ()
    # Params that split the work without changing the result (a shard's index): left out
    # of the cache key, so every shard shares one key and one stage_dir.
    key_exclude: tuple[str, ...] = ()
    # True: under torchrun every rank runs it together (data-parallel SAE training, caching in
    # shards); rank 0 alone stores and logs its result (interp_pipeline.runner.ranked).
    ranks: bool = False

    def metric_patterns(self, params: Mapping[str, Any]) -> tuple[str, ...] | None:
        if self.metrics is None:
            return None
        try:
            return tuple(self.metrics(self.settings(params)) if callable(self.metrics) else self.metrics)
        except (TypeError, ValueError, AttributeError, ConfigError):  # params pre-flight will refuse
            return None

    def settings(self, params: Mapping[str, Any]) -> Any:
        """``params`` resolved against the stage's schema (an instance of ``config``); ConfigError keys are
        relative to the params. A stage without settings gets None (and refuses any param)."""
        if self.config is None:
            if params:
                raise ConfigError(str(next(iter(params))), f"expected no settings ({self.name}() takes none)")
            return None
        return settings_object(self.config, params)

    def setting_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.config)) if self.config is not None else ()

    def input_names(self) -> tuple[str, ...]:
        """The parameters a pipeline wires to earlier stages' outputs."""
        return tuple(n for n in self.signature.parameters if n not in INJECTED_PARAMS and n != SETTINGS_PARAM)

    @property
    def signature(self) -> inspect.Signature:
        """The stage function's own signature (its inputs, ``settings``, the injected parameters)."""
        return inspect.signature(getattr(self.fn, "__wrapped__", self.fn))

    @property
    def wants_tracker(self) -> bool:
        return TRACKER_PARAM in self.signature.parameters

    @property
    def wants_workdir(self) -> bool:
        return WORKDIR_PARAM in self.signature.parameters

    @property
    def wants_stage_dir(self) -> bool:
        return STAGE_DIR_PARAM in self.signature.parameters

    def cacheable(self, params: dict[str, Any]) -> bool:
        return self.cache(params) if callable(self.cache) else bool(self.cache)


_REGISTRY: dict[str, StageDef] = {}
_loaded_modules: set[str] = set()


def stage(
    name: str | None = None,
    *,
    outputs: Iterable[str] = ("out",),
    config: type | None = None,
    cache: bool | Callable[[dict[str, Any]], bool] = True,
    version: int = 1,
    preflight: Callable[[Any], None] | None = None,
    summary: Iterable[str] = (),
    key_exclude: Iterable[str] = (),
    check_shapes: Callable[[Any, Mapping[str, Any]], None] | None = None,
    shape: Callable[[Any, Mapping[str, Any]], Any] | None = None,
    metrics: Iterable[str] | Callable[[Any], Iterable[str]] | None = None,
    ranks: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn`` as a stage. A one-output stage returns the value itself;
    a several-output stage returns a mapping with exactly those keys.

    ``fn`` takes its inputs by name, its settings as one ``settings`` parameter (an instance of
    ``config``) and any injected parameter (``tracker``, ``workdir`` ...). What is registered, and
    returned, is ``fn`` called with settings given as keyword arguments (see :func:`_bind_settings`).
    """

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        stage_name = name or fn.__name__
        takes_settings = SETTINGS_PARAM in inspect.signature(fn).parameters
        if (config is None) == takes_settings:
            raise ValueError(f"stage {stage_name!r}: a `settings` parameter and config= go together")
        bound = _bind_settings(stage_name, fn, config) if config is not None else fn
        definition = StageDef(
            stage_name, bound, tuple(outputs), config=config, cache=cache, version=version, preflight=preflight,
            check_shapes=check_shapes, shape=shape,
            metrics=metrics if metrics is None or callable(metrics) else tuple(metrics),
            summary=tuple(summary), key_exclude=tuple(key_exclude), ranks=ranks,
        )
        if not definition.outputs:
            raise ValueError(f"stage {stage_name!r} declares no outputs")
        existing = _REGISTRY.get(stage_name)
        if existing is not None and existing.fn.__qualname__ != fn.__qualname__:
            raise ValueError(f"stage name {stage_name!r} is registered twice")
        _REGISTRY[stage_name] = definition
        bound.stage_def = definition  # type: ignore[attr-defined]
        return bound

    return register


def _bind_settings(stage_name: str, fn: Callable[..., Any], config: type) -> Callable[..., Any]:
    """``fn`` with its settings given as keyword arguments (``steps=500``) or whole (``settings=TMSConfig(...)``),
    resolved against ``config``: the schema's defaults fill what is not given; unknown keys, wrong types and
    values out of range raise ConfigError before ``fn`` starts."""
    own = set(inspect.signature(fn).parameters) - {SETTINGS_PARAM}

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        settings = kwargs.pop(SETTINGS_PARAM, None)
        given = {k: kwargs.pop(k) for k in list(kwargs) if k not in own}
        if settings is not None and given:
            raise TypeError(f"{stage_name}() takes settings= or keyword settings, not both ({', '.join(given)})")
        return fn(*args, settings=settings_object(config, settings if settings is not None else given), **kwargs)

    return call


def load_stage_modules(extra: Iterable[str] = ()) -> None:
    """Import the stage modules of every installed package (the ``interp_pipeline.stages``
    entry points, interp_pipeline.common.plugins) and any modules named in ``runner.plugins``.

    Stage modules import torch and friends inside their functions, so this stays cheap.
    """
    load_plugins("stages")
    for module in extra:
        if module not in _loaded_modules:
            try:
                importlib.import_module(module)
            except Exception as error:
                raise _plugin_error(module, error) from error
            _loaded_modules.add(module)


def _plugin_error(module: str, error: Exception) -> ConfigError:
    name = getattr(error, "name", None)
    if isinstance(error, ModuleNotFoundError) and name and (module == name or module.startswith(f"{name}.")):
        return ConfigError("runner.plugins", f"expected importable modules, found '{module}', which does not exist",
                           suggestion="check its spelling, and that its folder is on PYTHONPATH")
    reason = (str(error).splitlines() or [""])[0]
    return ConfigError("runner.plugins", f"expected importable modules, found '{module}', whose import failed: "
                                         f"{type(error).__name__}: {reason}")


def registered_stages() -> dict[str, StageDef]:
    return dict(_REGISTRY)


def describe_stages() -> str:
    """Every registered stage, one a line: its name (a pipeline's ``fn:``), its module, and the
    first line of its docstring, so a reader gets from a pipeline file to the code in one hop."""
    load_stage_modules()
    width = max(len(name) for name in _REGISTRY)
    lines = []
    for name, definition in sorted(_REGISTRY.items()):
        doc = (inspect.getdoc(definition.fn) or "").split("\n")[0]
        lines.append(f"  {name:<{width}}  {definition.fn.__module__}\n  {'':<{width}}  {doc}")
    return "\n".join(lines)
