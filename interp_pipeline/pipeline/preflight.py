"""Pre-flight: every check a stage can make before any stage runs, with keys made absolute.

Two kinds of check, both declared on ``@stage``:

- ``preflight(settings)``: the stage's resolved settings alone (ranges, choices, a model or SAE that can be
  had here);
- ``check_shapes(settings, inputs)``: the settings against the *shapes* of the stage's
  inputs (hook names, layer indices, context length, SAE widths). A shape is what an
  upstream stage's ``shape(settings, inputs)`` says its output will look like, computed
  from config alone (a model on the meta device, a store's rows from its dataset's
  size), never by running that stage. So a hook the model lacks is found before the
  model trains, not after.

Shapes are computed lazily, only for inputs of stages about to run, so a fully cached
pipeline never imports torch here. A stage without ``shape`` gives its consumers None,
and they leave those checks to run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.pipeline.spec import InputRef, StageSpec


class _Shapes:
    """Each stage's output shapes, computed once and on demand."""

    def __init__(self, stages: Sequence[StageSpec]):
        self._stages = {s.name: s for s in stages}
        self._computed: dict[str, Mapping[str, Any]] = {}

    def stage(self, name: str) -> StageSpec:
        return self._stages[name]

    def of(self, ref: InputRef) -> Any:
        if ref.stage not in self._computed:
            self._computed[ref.stage] = self._compute(self._stages[ref.stage])
        return self._computed[ref.stage].get(ref.output)

    def known(self, ref: InputRef) -> Any:
        """The shape of ``ref`` if a check has computed it already, else None (computes nothing)."""
        return self._computed.get(ref.stage, {}).get(ref.output)

    def computed(self) -> list[Any]:
        return [shape for outputs in self._computed.values() for shape in outputs.values() if shape is not None]

    def inputs(self, spec: StageSpec) -> Mapping[str, Any]:
        return _LazyInputs(self, spec.inputs)

    def _compute(self, spec: StageSpec) -> Mapping[str, Any]:
        shape_fn = spec.definition.shape
        if shape_fn is None:
            return {}
        with _absolute_keys(spec):
            shape = shape_fn(spec.definition.settings(spec.params), self.inputs(spec))
        outputs = spec.definition.outputs
        if len(outputs) == 1:
            return {outputs[0]: shape}
        return dict(shape or {})


class _LazyInputs(Mapping[str, Any]):
    """The shapes of a stage's inputs by argument name; an input's shape is computed when read."""

    def __init__(self, shapes: _Shapes, refs: Mapping[str, InputRef]):
        self._shapes, self._refs = shapes, refs

    def __getitem__(self, arg: str) -> Any:
        return self._shapes.of(self._refs[arg])

    def get(self, arg: str, default: Any = None) -> Any:
        return self[arg] if arg in self._refs else default

    def __iter__(self) -> Iterator[str]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)


class _absolute_keys:
    """Re-raise a ConfigError keyed relative to a stage's params under the key the user wrote."""

    def __init__(self, spec: StageSpec):
        self._spec = spec

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        if isinstance(error, ConfigError) and not error.absolute:
            raise error.under(self._spec.params_key) from error


def run_preflight(stages: Iterable[StageSpec], pipeline: Sequence[StageSpec] | None = None) -> list[Any]:
    """Run ``stages``' pre-flight checks, in order, before any of them runs.

    ``pipeline`` is every stage of the pipeline (default: ``stages``), where the shapes
    of inputs that are cached, and so not about to run, come from. Returns the shapes
    the checks computed (a ModelShape among them when a model's was needed).
    """
    stages = list(stages)
    shapes = _Shapes(pipeline if pipeline is not None else stages)
    for spec in stages:
        definition = spec.definition
        with _absolute_keys(spec):
            settings = definition.settings(spec.params)
            if definition.preflight is not None:
                definition.preflight(settings)
            if definition.check_shapes is not None:
                definition.check_shapes(settings, shapes.inputs(spec))
        _refuse_partial_stores(spec, shapes)
    return shapes.computed()


def _refuse_partial_stores(spec: StageSpec, shapes: _Shapes) -> None:
    """A stage may not read a store its job writes only one shard of: the other shards are other
    jobs' (and may not have started), so this job would read an unfinished store."""
    for ref in spec.inputs.values():
        shard = getattr(shapes.known(ref), "shard", None)
        if shard is not None:
            producer = shapes.stage(ref.stage)
            raise ConfigError("num_shards", f"expected 1 when stage '{spec.name}' reads the store in the same job, "
                                            f"found {shard[1]} (this job writes only shard {shard[0]}); write the "
                                            f"shards with a pipeline that ends at the store (e.g. "
                                            f"+experiment=cache_activations), then run this one without "
                                            f"num_shards").under(producer.params_key)
