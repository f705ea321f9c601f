"""The rank-one update against ROME's own arithmetic (github.com/kmeng01/rome at 0874014:
rome/compute_u.py, rome/compute_v.py, rome/rome_main.py), restated, on the same checkpoint.

ROME: ``u = C^-1 k* / |C^-1 k*|`` (compute_u); ``right = (target - cur_output) / (cur_input . u)``
with ``cur_input``/``cur_output`` the rewrite prompt's key and the MLP projection's output there
(bias included; compute_v); ``W += u right^T`` in the module's layout (``upd_matrix_match_shape``:
GPT-2's Conv1D ``c_proj.weight`` is [d_mlp, d_model], as TransformerLens's ``W_out``). Here that is
applied to the Hugging Face GPT-2 and ours to the HookedTransformer of the same (unprocessed)
weights, with the same C, k*, k and value; the edited models must agree. Not compared: how v* is
found (compute_v's optimisation), which our tests check by its effect (tests/editing/test_rome.py).
"""

from __future__ import annotations

import pytest
import torch

from interp_pipeline.editing.rome import edited_copy, rank_one_update
from tests.support.tiny_gpt2 import load_tiny_gpt2, save_tiny_gpt2


def rome_update(weight: torch.Tensor, inverse_covariance: torch.Tensor, k_star: torch.Tensor, cur_input: torch.Tensor,
                cur_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    u = inverse_covariance @ k_star
    u = u / u.norm()
    right = (target - cur_output) / torch.dot(cur_input, u)
    update = u.unsqueeze(1) @ right.unsqueeze(0)
    if update.shape != weight.shape:
        update = update.T
    return weight + update


def test_rank_one_update_equals_romes_on_the_same_gpt2_weights(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    directory = save_tiny_gpt2(tmp_path / "tiny_gpt2")
    model = load_tiny_gpt2(directory, "hooked", False, monkeypatch)
    hf_model = AutoModelForCausalLM.from_pretrained(directory).eval().double()
    layer, generator = 1, torch.Generator().manual_seed(0)
    projection = hf_model.transformer.h[layer].mlp.c_proj
    weight, bias = projection.weight.detach().clone(), projection.bias.detach().clone()
    torch.testing.assert_close(model.blocks[layer].mlp.W_out.detach().double(), weight)

    d_mlp = weight.shape[0]
    keys = torch.randn(500, d_mlp, generator=generator, dtype=torch.float64) * torch.linspace(0.1, 2, d_mlp)
    covariance = keys.T @ keys / len(keys)
    k_star = keys[:8].mean(0)
    cur_input = k_star + 0.1 * torch.randn(d_mlp, generator=generator, dtype=torch.float64)
    value = cur_input @ weight + torch.randn(weight.shape[1], generator=generator, dtype=torch.float64)  # v*

    theirs = rome_update(weight, torch.linalg.inv(covariance), k_star, cur_input, cur_input @ weight + bias,
                         value + bias)
    ours = rank_one_update(weight, covariance, k_star, value, at=cur_input)
    torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=1e-10)

    with torch.no_grad():
        projection.weight.copy_(theirs)
    edited = edited_copy(model, layer, ours.float())
    tokens = torch.randint(2, 100, (2, 7), generator=generator)
    with torch.no_grad():
        expected = hf_model(tokens).logits.float()
        found = edited(tokens)
    torch.testing.assert_close(found.log_softmax(-1), expected.log_softmax(-1), atol=1e-4, rtol=0)
    assert not torch.allclose(model(tokens).log_softmax(-1), expected.log_softmax(-1), atol=1e-3)
