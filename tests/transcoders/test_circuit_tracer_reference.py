"""Our attribution graphs against circuit-tracer 0.5.0's on the same tiny random model and transcoders.

tests/reference_data/circuit_tracer/ was written by scripts/reference/circuit_tracer_reference.py
in circuit-tracer's own pinned environment (versions in its meta.json): the model's and
transcoders' weights, the prompt, and circuit-tracer's adjacency, pruning and scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from interp_pipeline.transcoders.attribution import attribute
from interp_pipeline.transcoders.graph import prune, scores

DATA = Path(__file__).parents[1] / "reference_data" / "circuit_tracer"


def _load(case: str):
    import sae_lens
    from sae_lens.saes.sae import SAEMetadata
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from interp_pipeline.transcoders.storage import TranscoderSet

    meta = json.loads((DATA / "meta.json").read_text())
    weights = load_file(str(DATA / f"{case}_weights.safetensors"))
    model = HookedTransformer(HookedTransformerConfig(**meta["config"], dtype=torch.float32)).eval()
    own = {k[len("model."):]: v for k, v in weights.items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(own, strict=False)
    assert not unexpected and all(k.endswith((".mask", ".IGNORE")) for k in missing)
    skip = case == "skip"
    cls, cfg_class = ((sae_lens.SkipTranscoder, sae_lens.SkipTranscoderConfig) if skip
                      else (sae_lens.Transcoder, sae_lens.TranscoderConfig))
    by_layer = {}
    for layer in range(meta["config"]["n_layers"]):
        d_model, d_tc = meta["config"]["d_model"], meta["d_transcoder"]
        tc = cls(cfg_class(d_in=d_model, d_sae=d_tc, d_out=d_model, apply_b_dec_to_input=False,
                           metadata=SAEMetadata(hook_name=f"blocks.{layer}.ln2.hook_normalized",
                                                hook_name_out=f"blocks.{layer}.hook_mlp_out")))
        state = {"W_enc": weights[f"transcoder.{layer}.W_enc"].T,  # circuit-tracer keeps it [d_transcoder, d_model]
                 "b_enc": weights[f"transcoder.{layer}.b_enc"], "W_dec": weights[f"transcoder.{layer}.W_dec"],
                 "b_dec": weights[f"transcoder.{layer}.b_dec"]}
        if skip:
            state["W_skip"] = weights[f"transcoder.{layer}.W_skip"]
        tc.load_state_dict(state)
        by_layer[layer] = tc.eval()
    return meta, model, TranscoderSet(by_layer), load_file(str(DATA / f"{case}_graph.safetensors"))


@pytest.mark.parametrize("case", ["relu", "skip"])
def test_adjacency_pruning_and_scores_equal_circuit_tracers(case):
    meta, model, transcoders, reference = _load(case)
    graph = attribute(model, transcoders, torch.tensor(meta["tokens"]), max_n_logits=5, desired_logit_prob=0.9,
                      batch_size=8)
    assert torch.equal(graph.active_features, reference["active_features"].long())
    assert torch.allclose(graph.activation_values, reference["activation_values"], atol=1e-5)
    assert graph.logit_tokens.tolist() == reference["logit_tokens"].tolist()
    assert torch.allclose(graph.logit_probabilities, reference["logit_probabilities"], atol=1e-6)
    assert graph.adjacency.shape == reference["adjacency"].shape
    scale = float(reference["adjacency"].abs().max())
    assert torch.allclose(graph.adjacency, reference["adjacency"], atol=1e-5 * scale, rtol=1e-4)
    pruned = prune(graph, 0.8, 0.98)
    assert torch.equal(pruned.node_mask, reference["node_mask"])
    assert torch.equal(pruned.edge_mask, reference["edge_mask"])
    ours = scores(graph)
    assert ours["replacement_score"] == pytest.approx(meta["cases"][case]["replacement_score"], abs=1e-5)
    assert ours["completeness_score"] == pytest.approx(meta["cases"][case]["completeness_score"], abs=1e-5)
