"""Every README command that works offline exits 0, run as written, in README order, in one shared
outputs directory (so the stage cache serves what an earlier command trained: the toy models train
once). Commands whose comment says ``needs: WHAT`` are not run; WHAT must be a known reason.

This is also the one place where the quickstart, ioi_patching and grokking experiments, the
look-inside experiments on the toy models, and causal_tracing, probes and rome_edit on the toy facts
model run end to end: the assertions the e2e tests made on their own runs (tests/e2e/test_cli.py,
test_look_cli.py, test_causal_tracing_cli.py, test_probes_rome_cli.py) are made here on the README's
runs, with api.load on the quickstart's SAE and store and the example notebook after them.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, cli_env, run_cli
from tests.e2e.test_cli import parents, sqlite_uri
from tests.support.readme_commands import REASONS, readme_commands

pytestmark = pytest.mark.slow

COMMANDS = readme_commands(REPO / "README.md")
RUN = [c for c in COMMANDS if c.needs is None]


@pytest.fixture(scope="module")
def readme(tmp_path_factory):
    """Run every offline README command; {command text: (completed process, seconds)} and the outputs dir."""
    # CI names the folder (INTERP_PIPELINE_README_OUTPUTS, emptied first) so that its reproduction suite,
    # run next over the same outputs, is served the stages these commands computed (.ci/run).
    named = os.environ.get("INTERP_PIPELINE_README_OUTPUTS")
    if named:
        outputs = Path(named)
        shutil.rmtree(outputs, ignore_errors=True)
        outputs.mkdir(parents=True)
    else:
        outputs = tmp_path_factory.mktemp("readme") / "outputs"
    results: dict[str, tuple[subprocess.CompletedProcess[str], float]] = {}
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for command in RUN:
        argv = command.argv()
        argv[0] = sys.executable if argv[0] == "python" else argv[0]
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=outputs.parent, env=cli_env(outputs, HF_HUB_OFFLINE="1"),
                              capture_output=True, text=True, timeout=1800)
        results[command.text] = (done, time.perf_counter() - started)
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = sum(s for _, s in results.values())
    cpu_seconds = (cpu.ru_utime + cpu.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    # Shown with -s or in the log: what the README costs (see the module docstring).
    print(f"\nREADME: {len(RUN)} commands run in {seconds:.0f} s ({cpu_seconds:.0f} s CPU), "
          f"{len(COMMANDS) - len(RUN)} not run")
    for text, (_, spent) in results.items():
        print(f"  {spent:7.1f} s  {text[:110]}")
    return outputs, results


def test_every_command_not_run_says_why():
    assert len(RUN) >= 20, [c.text for c in COMMANDS]
    for command in COMMANDS:
        if command.needs is not None:
            assert command.needs in REASONS, f"README.md:{command.line}: unknown reason 'needs: {command.needs}' " \
                                             f"(known: {', '.join(REASONS)})"
        else:
            # What the test cannot run must say so: a comment that speaks of the hub or a GPU without the marker.
            assert not re.search(r"\bhub\b|\bGPU\b", command.comment), \
                f"README.md:{command.line}: '{command.comment}' needs a 'needs: hub' (or gpu) marker"
            assert not re.search(r"&&|\||;|>", command.text), f"README.md:{command.line}: one command per line"


def test_every_offline_readme_command_exits_0(readme):
    _, results = readme
    failed = [f"README.md:{c.line}: exit {results[c.text][0].returncode}: {c.text}\n"
              + _why(results[c.text][0].stdout + results[c.text][0].stderr)
              for c in RUN if results[c.text][0].returncode != 0]
    assert not failed, "\n\n".join(failed)


def _why(output: str) -> str:
    """The lines a failed command logged as errors (a sweep's jobs among them), then the tail of its output."""
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    return "\n".join(errors[-20:])[-3000:] + "\n...\n" + output[-1500:]


def _output(readme, command: str) -> str:
    done, _ = readme[1][command]
    return done.stdout + done.stderr


def _parent(outputs: Path, experiment: str, overrides: str):
    """The README's run of ``+experiment=EXPERIMENT OVERRIDES`` and every run of that experiment."""
    runs, all_runs = parents(sqlite_uri(outputs), experiment)
    wanted = f"+experiment={experiment}{' ' + overrides if overrides else ''}"
    chosen = [r for r in runs if r.data.tags.get("hydra.overrides") == wanted]
    assert chosen, f"no run with overrides {wanted!r}: {[r.data.tags.get('hydra.overrides') for r in runs]}"
    assert chosen[0].info.status == "FINISHED"
    return chosen[0], all_runs


def _stage_run(all_runs, parent, stage):
    return next(r for r in all_runs if r.data.tags.get("stage") == stage
                and r.data.tags.get("mlflow.parentRunId") == parent.info.run_id)


def _check_page(client, run_id, name):
    """The page loads offline: plotly.js inlined exactly once, no script fetched from anywhere."""
    page = open(client.download_artifacts(run_id, name), encoding="utf-8").read()
    assert len(re.findall(r"\* plotly\.js v\d", page)) == 1
    assert not re.search(r"<script[^>]+src=", page) and "unpkg.com" not in page
    return page


# ---- folded from tests/e2e/test_cli.py: the README's quickstart, ioi_patching and grokking runs ----------

def test_quickstart_end_to_end(readme):
    outputs, _ = readme
    assert "│ scores.induction.layer1.max" in _output(readme, "python -m interp_pipeline +experiment=quickstart")
    run, all_runs = _parent(outputs, "quickstart", "")
    metrics = run.data.metrics
    assert metrics["scores.induction.layer1.max"] >= 0.5 and metrics["scores.induction.layer0.max"] <= 0.3
    assert metrics["model.eval/repeated_half_loss"] <= 1.0
    cache_run = _stage_run(all_runs, run, "cache")
    from interp_pipeline.activations.reader import ActivationStore

    store = ActivationStore.open(cache_run.data.tags["store_uri"])
    assert store.n_rows == metrics["cache.tokens_written"] == 64 * 41
    assert cache_run.data.metrics["compression_ratio"] > 0 and cache_run.data.metrics["tokens_per_s"] > 0
    # Patching: an induction head's output restores the second half's loss; heatmaps logged.
    patching_run = _stage_run(all_runs, run, "patching")
    assert metrics["patching.clean_loss"] < metrics["patching.corrupted_loss"]
    assert patching_run.data.tags["head_out/top1"].startswith("L1H")
    artifacts = {a.path for a in MlflowClient(sqlite_uri(outputs)).list_artifacts(patching_run.info.run_id)}
    assert {"head_out.png", "head_out_by_pos.png", "patching.html", "plotly.min.mjs", "top_components.md"} <= artifacts
    # The SAE on the residual stream before layer 1, evaluated with SAELens's evals on held-out sequences.
    assert metrics["sae_eval.reconstruction_quality/explained_variance"] >= 0.8
    assert metrics["sae_eval.model_performance_preservation/ce_loss_score"] >= 0.6
    assert metrics["sae_heldout.heldout_sequences"] == 128 and 0 < metrics["sae_eval.sparsity/l0"] < 512
    eval_run = _stage_run(all_runs, run, "sae_eval")
    assert "feature_density.png" in {a.path for a in MlflowClient(sqlite_uri(outputs)).list_artifacts(eval_run.info.run_id)}
    again = run_cli(["+experiment=quickstart"], outputs, timeout=600)
    assert again.returncode == 0 and "0 to compute" in again.stdout


def test_ioi_patching_on_the_toy_model_end_to_end(readme):
    outputs, _ = readme
    printed = _output(readme, "python -m interp_pipeline +experiment=ioi_patching model=toy_ioi")
    assert "│ model.eval/accuracy" in printed and "│ patching.clean_logit_diff" in printed
    run, all_runs = _parent(outputs, "ioi_patching", "model=toy_ioi")
    metrics = run.data.metrics
    assert metrics["model.eval/accuracy"] >= 0.95 and metrics["patching.clean_logit_diff"] >= 2
    assert metrics["prompts.pairs_kept"] >= 32
    patching_run = _stage_run(all_runs, run, "patching")
    # Every head's normalized effect is a metric; the path arrays and attribution are there too.
    assert {f"head_out/L{layer}H{head}" for layer in range(2) for head in range(4)} <= set(patching_run.data.metrics)
    assert "path_to_final/top1" in patching_run.data.metrics and "head_out/attribution_corr" in patching_run.data.metrics


def test_grokking_end_to_end(readme):
    run, _ = _parent(readme[0], "grokking", "")
    assert run.data.metrics["model.eval/test_accuracy"] >= 0.99
    assert run.data.metrics["fourier.top_k_energy_fraction"] >= 0.5


# ---- folded from tests/e2e/test_look_cli.py: inspect_model and logit_lens on the toy models ---------------

def test_inspect_model_on_the_induction_probe(readme):
    outputs, _ = readme
    parent, all_runs = _parent(outputs, "inspect_model", "model=toy_induction")
    inspect = _stage_run(all_runs, parent, "inspect")
    assert parent.data.metrics["inspect.answer_top1"] >= 0.85
    client = MlflowClient(sqlite_uri(outputs))
    names = {a.path for a in client.list_artifacts(inspect.info.run_id)}
    assert {"tokens.md", "top_predictions.md", "resid_norms.png", "attention_patterns.png", "inspect.html"} <= names
    history = client.get_metric_history(inspect.info.run_id, "norm/resid_post")
    assert sorted(m.step for m in history) == [0, 1]  # a value per layer, the layer as step
    page = _check_page(client, inspect.info.run_id, "inspect.html")
    assert "layer 1, head 3" in page and "&lt;bos&gt;" in page


def test_logit_lens_on_the_induction_probe(readme):
    outputs, _ = readme
    parent, all_runs = _parent(outputs, "logit_lens", "model=toy_induction")
    lens = _stage_run(all_runs, parent, "logit_lens")
    metrics = parent.data.metrics
    assert metrics["logit_lens.agreement/final_post"] == 1.0
    assert metrics["logit_lens.answer_prob/1_pre"] < 0.05 < 0.5 < metrics["logit_lens.answer_prob/final_post"]
    client = MlflowClient(sqlite_uri(outputs))
    names = {a.path for a in client.list_artifacts(lens.info.run_id)}
    assert {"logit_lens.md", "logit_lens_top1.png", "logit_lens_answer.png", "logit_lens_layers.png",
            "logit_lens.html"} <= names
    assert [m.step for m in client.get_metric_history(lens.info.run_id, "answer_prob")] == [0, 1, 2]
    _check_page(client, lens.info.run_id, "logit_lens.html")


def test_both_on_the_ioi_model(readme):
    outputs, _ = readme
    lens, _ = _parent(outputs, "logit_lens", "model=toy_ioi")
    assert lens.data.metrics["logit_lens.answer_top1/final_post"] >= 0.95
    inspect, _ = _parent(outputs, "inspect_model", "model=toy_ioi")
    assert inspect.data.metrics["inspect.answer_top1"] >= 0.95


# ---- folded from tests/e2e/test_causal_tracing_cli.py and test_probes_rome_cli.py: the toy facts model -------

def test_causal_tracing_on_the_toy_facts_model(readme):
    outputs, _ = readme
    assert "[3/3] tracing" in _output(readme, "python -m interp_pipeline +experiment=causal_tracing model=toy_facts")
    run, all_runs = _parent(outputs, "causal_tracing", "model=toy_facts")
    metrics = run.data.metrics
    assert metrics["tracing.prompts_traced"] + metrics["tracing.prompts_unknown"] == 256
    assert metrics["tracing.window"] == 1 and metrics["tracing.noise_std"] > 0
    tracing_run = _stage_run(all_runs, run, "tracing")
    artifacts = {a.path for a in MlflowClient(sqlite_uri(outputs)).list_artifacts(tracing_run.info.run_id)}
    assert {"causal_trace_average.png", "causal_trace_last_subject.png", "causal_trace_prompt0.png"} <= artifacts


def test_rome_edits_a_copy_and_probes_are_then_served_unchanged(readme):
    """After the README's two rome_edit runs, the trained model in the cache is untouched (each edit worked on a
    copy): probes again, every stage served from the cache, nothing recomputed for a damaged entry, the same
    numbers as the README's probes run."""
    outputs, _ = readme
    rome, _ = _parent(outputs, "rome_edit", "")
    assert rome.data.metrics["rome.efficacy_score"] > rome.data.metrics["rome.efficacy_before"]
    probes, _ = _parent(outputs, "probes", "")
    again = run_cli(["+experiment=probes"], outputs, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 to compute" in again.stdout and "not served" not in again.stdout + again.stderr
    runs, _ = parents(sqlite_uri(outputs), "probes")
    assert runs[-1].info.run_id != probes.info.run_id and runs[-1].data.metrics == probes.data.metrics


# ---- the notebook API on the README's runs, and the example notebook ----------------------------------------

def test_api_loads_the_quickstarts_sae_and_store(readme, monkeypatch):
    from sae_lens import SAE

    from interp_pipeline import api
    from interp_pipeline.activations.reader import ActivationStore

    monkeypatch.setenv("INTERP_PIPELINE_OUTPUTS", str(readme[0]))
    sae = api.load("quickstart", "sae")
    assert isinstance(sae, SAE) and sae.cfg.d_sae == 512
    from transformer_lens import HookedTransformer

    assert isinstance(api.load("quickstart", "model"), HookedTransformer)  # the trained toy model
    store = api.load("quickstart", "cache")
    assert isinstance(store, ActivationStore) and store.n_rows == 64 * 41
    hook = store.hooks[0]
    view = store[hook]
    assert view.shape[0] == 64 and view.shape[0] * view.shape[1] == store.n_rows
    assert (view[5, 2] == store.read(hook, int(view.rows(5)[2]))).all()
    with pytest.raises(api.NotFound, match=r"has no stage 'saes' \(did you mean 'sae'\?\)"):
        api.load("quickstart", "saes")


def test_the_example_notebook_runs(readme, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    # The kernel inherits this environment: the README's outputs (its MLflow store exists already).
    monkeypatch.setenv("INTERP_PIPELINE_OUTPUTS", str(readme[0]))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(REPO / "examples" / "quickstart.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    text = ["".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in cell.get("outputs", []))
            for cell in notebook.cells if cell.cell_type == "code"]
    assert "config 16 ['blocks.0.hook_resid_pre', 'blocks.1.attn.hook_z']" in text[0]
    assert "[3/3] cache" in text[1] and text[1].rstrip().endswith("0")  # the run's log, then its status
    assert text[2].startswith("ActivationStore(")
    assert "(16, 32, 64)" in text[3] and "torch.Size([32, 4, 16])" in text[3]
    assert text[4].strip() == "True"
    assert text[5].strip() == "('smoke', 1)"
