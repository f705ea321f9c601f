"""Reference outputs of circuit-tracer 0.5.0 for tests/transcoders/test_circuit_tracer_reference.py.

circuit-tracer pins transformers<=4.57.3 and its own TransformerLens, so it cannot live in the
project's environment; this script runs in its own (setup, once):

    python3 -m venv /work/ct-venv
    /work/ct-venv/bin/pip install torch==2.13.0          # first: the CPU build
    /work/ct-venv/bin/pip install circuit-tracer==0.5.0  # with its pinned transformers 4.57.3
    /work/ct-venv/bin/python scripts/reference/circuit_tracer_reference.py tests/reference_data/circuit_tracer

It builds what circuit-tracer's own tests build (a tiny random HookedTransformer, 2 layers,
and random per-layer transcoders: ReLU, then ReLU with a skip connection), computes
``attribute(...)``'s adjacency for a fixed token prompt, prunes it, and writes the model's
and transcoders' weights (safetensors), the prompt, and circuit-tracer's outputs (adjacency,
active features, logit targets and probabilities, pruning masks, scores) for our test to
compare against. Only this package is imported here; nothing of interp_pipeline.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import torch
from safetensors.torch import save_file

CONFIG = dict(n_layers=2, d_model=16, n_ctx=16, d_head=4, n_heads=4, d_mlp=32, act_fn="gelu", d_vocab=40,
              normalization_type="LN", positional_embedding_type="standard", seed=0, device="cpu")
D_TRANSCODER = 32
TOKENS = [0, 7, 3, 12, 25, 3, 9, 31, 18, 5]


class NumberTokenizer:
    """What attribute() reads of a tokenizer (the random model has none): token 0 is BOS, ids decode to numbers."""

    all_special_ids = [0]
    bos_token_id = pad_token_id = eos_token_id = 0
    padding_side = "right"
    vocab_size = 40

    def decode(self, ids):
        return " ".join(str(int(i)) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)) \
            if not isinstance(ids, int) else str(ids)


def build(skip: bool):
    from circuit_tracer.replacement_model.replacement_model_transformerlens import TransformerLensReplacementModel
    from circuit_tracer.transcoder.single_layer_transcoder import SingleLayerTranscoder, TranscoderSet
    from transformer_lens import HookedTransformerConfig

    generator = torch.Generator().manual_seed(1 + int(skip))
    transcoders = {}
    for layer in range(CONFIG["n_layers"]):
        tc = SingleLayerTranscoder(CONFIG["d_model"], D_TRANSCODER, torch.nn.ReLU(), layer, skip_connection=skip,
                                   device=torch.device("cpu"), dtype=torch.float32)
        with torch.no_grad():
            for parameter in tc.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
            tc.b_enc.sub_(0.6)
        transcoders[layer] = tc
    tset = TranscoderSet(transcoders, feature_input_hook="ln2.hook_normalized", feature_output_hook="hook_mlp_out",
                         scan="reference")
    model = TransformerLensReplacementModel.from_config(HookedTransformerConfig(**CONFIG, dtype=torch.float32), tset)
    model.tokenizer = NumberTokenizer()
    return model, tset


def main(out: Path) -> None:
    from circuit_tracer import attribute
    from circuit_tracer.graph import compute_graph_scores, prune_graph

    out.mkdir(parents=True, exist_ok=True)
    meta = {"circuit_tracer": version("circuit-tracer"), "torch": torch.__version__,
            "transformer_lens": version("transformer-lens"), "transformers": version("transformers"),
            "config": CONFIG, "d_transcoder": D_TRANSCODER, "tokens": TOKENS, "cases": {}}
    for skip in (False, True):
        name = "skip" if skip else "relu"
        model, tset = build(skip)
        tokens = torch.tensor(TOKENS)
        graph = attribute(tokens, model, max_n_logits=5, desired_logit_prob=0.9, batch_size=8)
        pruned = prune_graph(graph, node_threshold=0.8, edge_threshold=0.98)
        replacement, completeness = compute_graph_scores(graph)
        # The HookedTransformer's own parameters, under TransformerLens's names (the wrappers' left out).
        weights = {f"model.{k.replace('.old_mlp.', '.').replace('.old_unembed.', '.')}": v.contiguous().clone()
                   for k, v in model.named_parameters() if not k.startswith("transcoders.")}
        for layer, tc in enumerate(tset):
            for key, value in tc.state_dict().items():
                weights[f"transcoder.{layer}.{key}"] = value.contiguous().clone()
        save_file(weights, str(out / f"{name}_weights.safetensors"))
        save_file({"adjacency": graph.adjacency_matrix.contiguous(),
                   "active_features": graph.active_features.contiguous(),
                   "selected_features": graph.selected_features.contiguous(),
                   "activation_values": graph.activation_values.contiguous(),
                   "logit_tokens": torch.tensor([t.vocab_idx for t in graph.logit_targets]),
                   "logit_probabilities": graph.logit_probabilities.contiguous(),
                   "node_mask": pruned.node_mask.contiguous(), "edge_mask": pruned.edge_mask.contiguous(),
                   "cumulative_scores": pruned.cumulative_scores.contiguous()},
                  str(out / f"{name}_graph.safetensors"))
        meta["cases"][name] = {"replacement_score": replacement, "completeness_score": completeness,
                               "n_features": int(graph.active_features.shape[0])}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/reference_data/circuit_tracer"))
