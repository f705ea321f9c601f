"""ROME's causal tracing and its averaging, restated for the tests from the ROME repository
(github.com/kmeng01/rome at 0874014: experiments/causal_trace.py and
notebooks/average_causal_effects.ipynb), on a plain Hugging Face GPT-2 with torch forward hooks:
no TransformerLens, no weight processing, the modules ROME's ``layername`` names.

Written in our own words; what is kept exactly is the arithmetic:

- ``collect_embedding_std``: each subject string tokenized alone, its ``wte`` rows stacked, the
  (unbiased) std of every element;
- ``trace_with_patch``: a batch of one clean row and ``samples`` noised rows; noise added to the
  ``wte`` output at the subject's positions of the noised rows; the listed (token, module) outputs
  of the noised rows overwritten by the clean row's; the score is the softmax at the last position,
  averaged over the noised rows, at the answer. ROME draws its noise from ``RandomState(1)``; here the
  draws are passed in, so the engine and the reference see the same noise;
- ``trace_important_window``: for mlp/attn, the modules of layers
  ``range(max(0, L - w // 2), min(n, L - (-w // 2)))`` restored together;
- ``read_knowlege`` (sic, the notebook's name): rows pooled per position class across prompts, the
  middle-subject and further tokens one row each, ``first_a`` always counted, and the mean low score
  over all prompts subtracted.
"""

from __future__ import annotations

from typing import Any

import numpy
import torch

MODULE = {None: "transformer.h.{}", "mlp": "transformer.h.{}.mlp", "attn": "transformer.h.{}.attn"}


def collect_embedding_std(hf_model: Any, tokenizer: Any, subjects: list[str]) -> float:
    rows = []
    for subject in subjects:
        ids = torch.tensor([tokenizer.encode(subject, add_special_tokens=False)])
        with torch.no_grad():
            rows.append(hf_model.get_submodule("transformer.wte")(ids)[0])
    return torch.cat(rows).std().item()


def trace_with_patch(hf_model: Any, tokens: torch.Tensor, states: list[tuple[int, str]], answer: int,
                     subject_range: tuple[int, int], noise: torch.Tensor) -> float:
    """``tokens`` [P]; ``noise`` [samples, subject tokens, d_model] (already scaled)."""
    samples = noise.shape[0]
    batch = tokens[None].repeat(samples + 1, 1)
    begin, end = subject_range
    handles = []

    def on_embed(module, inputs, output):
        output = output.clone()
        output[1:, begin:end] += noise.to(output.dtype)
        return output

    handles.append(hf_model.get_submodule("transformer.wte").register_forward_hook(on_embed))
    by_module: dict[str, list[int]] = {}
    for position, name in states:
        by_module.setdefault(name, []).append(position)
    for name, positions in by_module.items():
        def restore(module, inputs, output, positions=positions):
            hidden = output[0] if isinstance(output, tuple) else output
            for t in positions:
                hidden[1:, t] = hidden[0, t]
            return output

        handles.append(hf_model.get_submodule(name).register_forward_hook(restore))
    try:
        with torch.no_grad():
            logits = hf_model(batch).logits
    finally:
        for handle in handles:
            handle.remove()
    return float(torch.softmax(logits[1:, -1].double(), dim=1).mean(dim=0)[answer])


def calculate_hidden_flow(hf_model: Any, tokens: torch.Tensor, answer: int, subject_range: tuple[int, int],
                          noise: torch.Tensor, kind: str | None, window: int) -> dict[str, Any]:
    """``scores`` [positions, layers] (ROME's layout), ``low_score``, ``high_score``."""
    n_layers = hf_model.config.n_layer
    with torch.no_grad():
        high = float(torch.softmax(hf_model(tokens[None]).logits[0, -1].double(), -1)[answer])
    low = trace_with_patch(hf_model, tokens, [], answer, subject_range, noise)
    table = numpy.zeros((len(tokens), n_layers))
    for t in range(len(tokens)):
        for layer in range(n_layers):
            if kind is None:
                layers = [layer]
            else:
                layers = range(max(0, layer - window // 2), min(n_layers, layer - (-window // 2)))
            states = [(t, MODULE[kind].format(l)) for l in layers]
            table[t, layer] = trace_with_patch(hf_model, tokens, states, answer, subject_range, noise)
    return {"scores": table, "low_score": low, "high_score": high, "subject_range": subject_range}


def read_knowledge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The notebook's average: ``result`` [6 classes, layers] minus the mean low score, and the row counts."""
    classes: list[list[numpy.ndarray]] = [[] for _ in range(6)]
    low = []
    for data in results:
        scores = data["scores"]
        first_e, first_a = data["subject_range"]
        last_e, last_a = first_a - 1, len(scores) - 1
        low.append(data["low_score"])
        classes[0].append(scores[first_e][None])
        classes[1].append(scores[first_e + 1:last_e])
        classes[2].append(scores[last_e][None])
        classes[3].append(scores[first_a][None])
        classes[4].append(scores[first_a + 1:last_a])
        classes[5].append(scores[last_a][None])
    pooled = [numpy.concatenate(rows) for rows in classes]
    means = numpy.stack([rows.mean(axis=0) if len(rows) else numpy.full(scores.shape[1], numpy.nan)
                         for rows in pooled])
    return {"result": means - numpy.mean(low), "low_score": float(numpy.mean(low)),
            "counts": [len(rows) for rows in pooled]}
