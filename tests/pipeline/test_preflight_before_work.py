"""Exit status 2 means "found before any work": each mistake below stops the run before its first
stage, with one line naming the key, and leaves no stage-cache entry and no MLflow run behind.

The mistakes all need the model's shape (hook names, layers, context, widths), which pre-flight
takes from the config alone (interp_pipeline.models.shape): for a trained toy model that means
before it trains, which is what these tests pin down.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from omegaconf import open_dict

from interp_pipeline.experiments.compose import compose
from interp_pipeline.experiments.config import ExpectEntry
from interp_pipeline.common.exit_status import EXIT_CONFIG
from interp_pipeline.experiments.run import Invocation, launch


def run_and_capture(outputs: Path, caplog: pytest.LogCaptureFixture, overrides: list[str], expect=None) -> str:
    """Run in-process; assert status 2 and that nothing ran; return the error line."""
    cfg = compose(overrides)
    with open_dict(cfg):
        for key, entry in (expect or {}).items():
            cfg.expect[key] = ExpectEntry(**entry)
    with caplog.at_level(logging.ERROR, logger="interp_pipeline"):
        status = launch(cfg, Invocation("preflight_test", outputs / "run", overrides=overrides)).status
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert status == EXIT_CONFIG, errors
    assert len(errors) == 1 and errors[0].startswith("error: "), errors
    # Nothing ran: no stage-cache entry, and the MLflow store was never opened (no run in it).
    cache = outputs / "cache"
    assert not cache.exists() or not any(cache.rglob("complete.json")), sorted(cache.rglob("*"))
    assert not (outputs / "mlflow.db").exists()
    return errors[0]


CASES = {
    "stats hook the model lacks": (
        ["+experiment=smoke", "stats.hooks=[blocks.5.hook_resid_pre]"],
        "stats.hooks[0]: expected a hook name of this model", "did you mean 'blocks.1.hook_resid_pre'?"),
    "mlp hook of an attention-only model": (
        ["+experiment=smoke", "model=toy_induction", "data=task_tokens", "data.params.n_sequences=4",
         "stats.hooks=[blocks.0.hook_mlp_out]"],
        "stats.hooks[0]: expected a hook this model's forward calls", "attention only"),
    "cache hook of a model that is still to be trained": (
        ["+experiment=cache_activations", "model=toy_induction", "data=task_tokens",
         "cache.hooks=[blocks.2.hook_resid_pre]"],
        "cache.hooks[0]: expected a hook name of this model (2 layers, attention only)", ""),
    "cache hook with no token axis": (
        ["+experiment=cache_activations", "model=toy_induction", "data=task_tokens",
         "cache.hooks=[blocks.1.attn.hook_pattern]"],
        "cache.hooks[0]: expected a hook with one activation per token", ""),
    "sae hook the model lacks, streamed": (
        ["+experiment=sae_train_streamed", "model=toy_induction", "sae.hook=blocks.5.hook_resid_pre"],
        "sae.hook: expected a hook name of this model", ""),
    "sae d_in that is not the hook's width": (
        ["+experiment=sae_train", "model=toy_induction", "sae.d_in=17"],
        "sae.d_in: expected the width of the activations (64 for blocks.1.hook_resid_pre), found 17", ""),
    "sae eval_tokens larger than the store": (
        ["+experiment=sae_train", "model=toy_induction", "sae.eval_tokens=100000000"],
        "sae.eval_tokens: expected to leave at least one training batch", ""),
    "n_layers that is not an integer": (
        ["+experiment=smoke", "model.cfg.n_layers=two"], "model.cfg.n_layers: expected int, found 'two'", ""),
    "batch size zero": (["+experiment=smoke", "stats.batch_size_prompts=0"],
                        "stats.batch_size_prompts: expected an integer >= 1, found 0", ""),
    "batch size negative": (["+experiment=smoke", "stats.batch_size_prompts=-4"],
                            "stats.batch_size_prompts: expected an integer >= 1, found -4", ""),
    "sequences longer than n_ctx": (["+experiment=smoke", "data.params.seq_len=65"],
                                    "data.params.seq_len: expected sequences of at most n_ctx=64 tokens, found 65", ""),
    "block_every on an attention-only model": (
        ["+experiment=ioi_patching", "model=toy_ioi", "patching.grids=[block_every]"],
        "patching.grids[0]: 'block_every' patches mlp_out", "attention-only"),
    "path receiver outside the model": (
        ["+experiment=ioi_patching", "model=toy_ioi", "patching.path=[{receivers: [[5, 0]]}]"],
        "patching.path[0].receivers[0]: expected [layer, head] with layer < 2 and head < 4", ""),
    "prompt names the toy tokenizer cannot encode": (
        ["+experiment=ioi_patching", "model=toy_ioi", "+data.params.names=[Zorblax,Quuxington,Frobnia]",
         "data.params.min_pairs=1"],
        "data.params.names: the model's tokenizer cannot encode 'Then, Quuxington and Zorblax", ""),
}


@pytest.mark.parametrize("case", list(CASES))
def test_mistake_stops_before_any_stage(case, outputs, caplog):
    overrides, start, contains = CASES[case]
    line = run_and_capture(outputs, caplog, overrides)
    assert line.removeprefix("error: ").startswith(start), line
    assert contains in line


def test_expect_metric_typo_is_found_before_the_run_with_a_suggestion(outputs, caplog):
    line = run_and_capture(outputs, caplog, ["+experiment=smoke"], expect={"stats.loss_meen": {"min": 1.0}})
    assert line.startswith("error: expect.stats.loss_meen: expected a metric stage 'stats' logs"), line
    assert "did you mean 'loss_mean'?" in line


def test_expect_metric_that_a_glob_declares_passes_validation(outputs):
    from interp_pipeline.experiments.run import prepare

    cfg = compose(["+experiment=ioi_patching", "model=toy_ioi"])
    with open_dict(cfg):
        cfg.expect["patching.head_out/L1H3"] = ExpectEntry(min=-10.0)
    prepare(cfg)  # head_out/* is declared: no error


def test_params_of_an_unselected_group_is_an_error_not_null(outputs, caplog, tmp_path):
    pipeline = tmp_path / "pipe.yaml"
    pipeline.write_text(yaml.safe_dump({"stages": [
        {"name": "model", "fn": "load_model", "params": "${model}"},
        {"name": "sae", "fn": "train_sae", "inputs": {"activations": "model"}, "params": "${sae}"},
    ]}))
    line = run_and_capture(outputs, caplog, ["+experiment=smoke", f"pipeline={pipeline}"])
    assert line.startswith("error: sae: expected a value: stage 'sae'"), line
    assert "'- /sae: default'" in line


def test_local_sae_of_another_width_is_refused_before_any_work(outputs, caplog, tmp_path):
    from sae_lens import SAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    folder = tmp_path / "sae"
    cfg = StandardSAEConfig(d_in=32, d_sae=64, metadata=SAEMetadata(hook_name="blocks.0.hook_resid_pre"))
    SAE.from_dict(cfg.to_dict()).save_model(folder)
    pipeline = tmp_path / "pipe.yaml"
    pipeline.write_text(yaml.safe_dump({"stages": [
        {"name": "model", "fn": "load_model", "params": "${model}"},
        {"name": "tokens", "fn": "${data.fn}", "inputs": {"model": "model"}, "params": "${data.params}"},
        {"name": "sae", "fn": "load_sae", "params": {"path": str(folder)}},
        {"name": "eval", "fn": "evaluate_sae", "inputs": {"model": "model", "sae": "sae", "tokens": "tokens"}},
    ]}))
    line = run_and_capture(outputs, caplog, ["+experiment=smoke", f"pipeline={pipeline}", "runner.check_expect=false"])
    assert "expected a hook as wide as the SAE's d_in (32), found 'blocks.0.hook_resid_pre' of width 64" in line


def test_hook_of_a_hugging_face_checkpoint_is_checked_from_its_config_json(outputs, caplog, tmp_path, monkeypatch):
    from tests.support.tiny_gpt2 import save_tiny_gpt2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    directory = save_tiny_gpt2(tmp_path / "tiny_gpt2")
    line = run_and_capture(outputs, caplog, ["+experiment=smoke", "model=hf", f"model.name_or_path={directory}",
                                             "stats.hooks=[blocks.2.hook_resid_pre]"])
    assert line.startswith("error: stats.hooks[0]: expected a hook name of this model (2 layers)"), line


@pytest.mark.parametrize("architecture, override, error", [
    ("neox", "patching.grids=[resid_mid]",
     "patching.grids[0]: 'resid_mid' patches resid_mid, and this model's blocks are parallel (attention and MLP "
     "both read resid_pre): it has no resid_mid"),
    ("llama", "patching.path=[{receivers: [[1, 3]], input: k}]",
     "patching.path[0].receivers[0]: expected [layer, head] with layer < 2 and head < 2 (a key/value head: this "
     "model has n_key_value_heads=2), found [1, 3]"),
], ids=["parallel_blocks", "grouped_query"])
def test_patching_a_hugging_face_checkpoint_is_checked_against_its_blocks(architecture, override, error, outputs,
                                                                        caplog, tmp_path, monkeypatch):
    from tests.support.tiny_bridges import save_tiny

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    directory = save_tiny(architecture, tmp_path / "tiny")  # no "llama" in the path: see tests/patching/test_bridge.py
    line = run_and_capture(outputs, caplog, [
        "+experiment=ioi_patching", "model=hf", f"model.name_or_path={directory}", "data=prompt_pairs",
        "data.params.pairs=[{clean: 'the cat sat on the', corrupted: 'the dog sat on the', answer: ' mat', "
        "wrong: ' park'}]", override])
    assert line == f"error: {error}", line
