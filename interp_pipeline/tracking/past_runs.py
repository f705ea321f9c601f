"""Runs read back from the MLflow store: an experiment's latest finished run (or one by its id),
and where one of its stages left its output.

An experiment's parent run carries a ``cache_key.STAGE`` tag per stage and its stage runs the
stage's function (``stage.fn``), so a stage's output is found in the stage cache by experiment and
stage name, without anyone knowing a hash (``api.load``). Every miss is :class:`NotFound`, in one
line that names what exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from interp_pipeline.common.errors import NotFound, did_you_mean, one_of


@dataclass(frozen=True)
class StageOutput:
    """Where a finished run's stage left its output: the stage cache entry ``fn``/``cache_key``
    under the run's own ``runner.cache_dir`` (None when the run logged none)."""

    run_id: str  # the experiment's parent run
    stage: str
    fn: str
    cache_key: str
    cache_dir: str | None


class PastRuns:
    """The finished runs of one MLflow store."""

    def __init__(self, uri: str):
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(uri)

    def experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is None:
            known = [e.name for e in self.client.search_experiments() if e.name != "Default"]
            hint = did_you_mean(name, known)
            raise NotFound(f"no MLflow experiment '{name}' in {self.uri}"
                           + (f" ({hint})" if hint else f" (experiments run so far: {one_of(known)})"))
        return found.experiment_id

    def parent_run(self, experiment: str, run_id: str | None = None) -> Any:
        """The experiment's latest finished parent run, or the run ``run_id`` (a stage run's id names
        its parent's run too)."""
        from mlflow.exceptions import MlflowException

        experiment_id = self.experiment_id(experiment)
        if run_id is None:
            runs = self.client.search_runs([experiment_id], "attributes.status = 'FINISHED'",
                                           order_by=["attributes.start_time DESC"], max_results=200)
            parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags and "pipeline" in r.data.tags]
            if not parents:
                raise NotFound(f"experiment '{experiment}' has no finished run in {self.uri}; run it first "
                               f"(api.run('{experiment}') or python -m interp_pipeline +experiment={experiment})")
            return parents[0]
        try:
            found = self.client.get_run(run_id)
        except MlflowException:
            raise NotFound(f"no MLflow run '{run_id}' in {self.uri}") from None
        if found.info.experiment_id != experiment_id:
            raise NotFound(f"run '{run_id}' is not a run of experiment '{experiment}'")
        parent = found.data.tags.get("mlflow.parentRunId")
        return self.client.get_run(parent) if parent else found

    def stage_output(self, experiment: str, stage: str, run_id: str | None = None) -> StageOutput:
        """Where ``stage`` of the experiment's latest finished run (or of ``run_id``) left its output."""
        parent = self.parent_run(experiment, run_id)
        parent_id = parent.info.run_id
        keys = {k.removeprefix("cache_key."): v for k, v in parent.data.tags.items() if k.startswith("cache_key.")}
        if stage not in keys:
            hint = did_you_mean(stage, keys)
            raise NotFound(f"run {parent_id} of '{experiment}' has no stage '{stage}' "
                           + (f"({hint})" if hint else f"(stages: {', '.join(keys)})"))
        children = self.client.search_runs([parent.info.experiment_id],
                                           f"tags.mlflow.parentRunId = '{parent_id}' and tags.stage = '{stage}'",
                                           max_results=1)
        if not children:
            raise NotFound(f"run {parent_id} of '{experiment}' has no run for stage '{stage}' (it did not finish)")
        return StageOutput(parent_id, stage, children[0].data.tags["stage.fn"], keys[stage],
                           parent.data.params.get("runner.cache_dir"))
