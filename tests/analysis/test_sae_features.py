"""SAE features per token and the feature dashboard's numbers, on a tiny random model and tiny SAEs
built here: checked against sae.encode run directly, and against a feature planted where it must fire."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sae_lens")

from interp_pipeline.analysis import feature_dashboard as board  # noqa: E402
from interp_pipeline.analysis import sae_features as sf  # noqa: E402
from tests.support.models import tiny_model_and_tokens  # noqa: E402
from tests.support.saes import PLANTED, TOKEN_WORD, planted_feature, random_sae  # noqa: E402

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def random_setup():
    """A 2-layer random model (d_model 16), 6 sequences of 10 tokens, and a 48-latent random SAE
    biased so that tokens have anywhere from none to many active latents."""
    model, tokens = tiny_model_and_tokens(6, 10)
    return model, tokens, random_sae(16, 48, hook=HOOK, bias=-3.0)


def test_encode_matches_sae_encode_on_the_hook_run_directly(random_setup):
    model, tokens, sae = random_setup
    x, features, x_hat = sf.encode(model, sae, tokens, HOOK, batch_size=4)  # two batches, the last short
    _, cache = model.run_with_cache(tokens)
    with torch.no_grad():
        direct = sae.encode(cache[HOOK])
        torch.testing.assert_close(x, cache[HOOK])
        torch.testing.assert_close(features, direct)
        torch.testing.assert_close(x_hat, sae.decode(direct))


def test_per_token_l0_and_top_k_agree_with_a_direct_computation(random_setup):
    model, tokens, sae = random_setup
    _, features, _ = sf.encode(model, sae, tokens, HOOK, batch_size=16)
    _, cache = model.run_with_cache(tokens)
    with torch.no_grad():
        direct = sae.encode(cache[HOOK])
    l0 = sf.per_token_l0(features)
    assert torch.equal(l0, (direct > 0).sum(-1))
    assert l0.min() < 5 < l0.max(), l0  # some tokens have fewer active latents than k, some more
    ids, values = sf.top_k_features(features, 5)
    for b in range(tokens.shape[0]):
        for p in range(tokens.shape[1]):
            active = [(float(v), i) for i, v in enumerate(direct[b, p].tolist()) if v > 0]
            expected = sorted(active, key=lambda item: -item[0])[:5]
            got = [(float(v), int(i)) for v, i in zip(values[b, p], ids[b, p]) if i >= 0]
            assert [i for _, i in got] == [i for _, i in expected]
            assert [v for v, _ in got] == pytest.approx([v for v, _ in expected])
            assert all(i == -1 and v == 0 for v, i in zip(values[b, p, len(got):], ids[b, p, len(got):]))


def test_reconstruction_metrics_are_the_tutorials_mse_and_sae_lens_explained_variance():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(40, 8, generator=generator) + 3.0
    x_hat = x + 0.3 * torch.randn(40, 8, generator=generator)
    metrics = sf.reconstruction_metrics(x, x_hat)
    residual = (x - x_hat).pow(2)
    assert metrics["mse"] == pytest.approx(float(residual.mean()))
    assert metrics["mse_per_token"] == pytest.approx(float(residual.sum(-1).mean()))
    variance = (x - x.mean(0)).pow(2).sum(-1).mean()
    assert metrics["explained_variance"] == pytest.approx(float(1 - residual.sum(-1).mean() / variance), rel=1e-5)
    assert metrics["cossim"] == pytest.approx(float(torch.cosine_similarity(x, x_hat, dim=-1).mean()))


def test_position_masks_leave_out_right_padding_and_special_tokens():
    tokenizer = SimpleNamespace(pad_token_id=1, eos_token_id=0, all_special_ids=[0, 1])
    tokens = torch.tensor([[0, 5, 6, 7, 8], [0, 5, 6, 1, 1], [0, 1, 6, 1, 1]])
    valid, counted = sf.position_masks(SimpleNamespace(tokenizer=tokenizer), tokens, exclude_special=True)
    assert valid.tolist() == [[True] * 5, [True, True, True, False, False], [True, True, True, False, False]]
    # A pad id inside the prompt is not padding, but it is special: shown, not counted.
    assert counted.tolist() == [[False, True, True, True, True], [False, True, True, False, False],
                                [False, False, True, False, False]]
    _, everything = sf.position_masks(SimpleNamespace(tokenizer=tokenizer), tokens, exclude_special=False)
    assert torch.equal(everything, valid)


def test_max_activating_contexts_find_the_planted_feature_where_it_was_planted():
    planted = planted_feature()
    activations = board.feature_activations(planted.model, planted.sae, planted.tokens, "blocks.0.hook_resid_pre",
                                            [PLANTED, 0], batch_size=4)
    fired = activations[..., 0] > 0
    assert sorted(map(tuple, fired.nonzero().tolist())) == sorted(planted.places)
    valid, counted = sf.position_masks(planted.model, planted.tokens, exclude_special=True)
    (card, _) = board.feature_cards(planted.model, planted.tokens, activations, valid, counted, [PLANTED, 0],
                                    contexts=3, before=2, after=1, bins=5)
    # Strongest first: 5 + 0.1 * position, so (4, 15), then (2, 10), then (0, 3); (5, 1) is fourth.
    assert [(c.sequence, c.position) for c in card.contexts] == [(4, 15), (2, 10), (0, 3)]
    for context in card.contexts:
        assert context.activation == pytest.approx(planted.activation(context.position), abs=1e-5)
        start = context.position - 2
        expected = planted.model.to_str_tokens(planted.tokens[context.sequence, start:context.position + 2])
        assert context.tokens == expected[:len(context.tokens)]
        assert context.tokens[context.highlight] == TOKEN_WORD
        assert [a > 0 for a in context.activations] == [i == context.highlight for i in range(len(context.tokens))]
    assert len(card.contexts[0].tokens) == 3  # position 15 is the last: two before, none after
    assert card.max_activation == pytest.approx(planted.activation(15), abs=1e-5)
    assert card.density == pytest.approx(4 / counted.sum().item())
    assert sum(card.histogram) == 4 and card.edges[0] == pytest.approx(planted.activation(1), abs=1e-5)


def test_positions_left_out_are_never_max_activating():
    activations = torch.tensor([[9.0, 1.0, 0.0], [2.0, 2.0, 0.5]])
    counted = torch.tensor([[False, True, True], [True, True, True]])
    # Ties keep their order (sequence 1, position 0 before position 1); zero activations are no context.
    assert board.max_activating_positions(activations, counted, 10) == [(1, 0, 2.0), (1, 1, 2.0), (0, 1, 1.0),
                                                                        (1, 2, 0.5)]
    assert board.context_window(0, 1, valid_length=3, before=5, after=5) == (0, 3)


def test_strongest_features_rank_the_counted_tokens_top_k_by_activation():
    prompt = sf.PromptFeatures(token_ids=[0, 4, 5], tokens=["<bos>", "a", "b"], counted=[False, True, True],
                               l0=[2, 2, 1], top_ids=[[9, 8], [3, 1], [1, -1]],
                               top_values=[[50.0, 40.0], [2.0, 1.0], [3.0, 0.0]])
    assert sf.strongest_features([prompt], 5) == [1, 3]  # BOS's features (9, 8) are not counted
    assert sf.strongest_features([prompt], 1) == [1]


def test_heatmap_columns_give_every_token_its_strongest_feature_before_any_token_its_second():
    prompt = sf.PromptFeatures(token_ids=[0, 4, 5, 6], tokens=["<bos>", "a", "b", "c"],
                               counted=[False, True, True, True], l0=[2, 2, 2, 1],
                               top_ids=[[9, 8], [1, 2], [3, 1], [1, -1]],
                               top_values=[[50.0, 40.0], [5.0, 4.0], [1.0, 0.5], [3.0, 0.0]])
    assert sf.heatmap_columns(prompt, 2) == [1, 3]  # b's weak top feature comes before a's second
    assert sf.heatmap_columns(prompt, 3) == [1, 2, 3]  # ordered by the first token (and rank) listing them
