"""Pretrained sources without the network: a tiny GPT-2 saved here, and a hub cache faked from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.common import hf_hub_access as access
from interp_pipeline.models import hub

from tests.support.tiny_gpt2 import D_MODEL, FAKE_COMMIT, N_CTX, N_LAYERS, VOCAB, save_tiny_gpt2  # noqa: F401


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_gpt2(tmp_path_factory.mktemp("tiny_gpt2"))


def _hf_model(directory: Path):
    from transformers import AutoModelForCausalLM

    # eager, as the bridge loads it: sdpa reorders ops and drifts ~1e-6 here
    return AutoModelForCausalLM.from_pretrained(directory, attn_implementation="eager").eval()


def _tokens():
    import torch

    return torch.randint(0, VOCAB, (3, 12), generator=torch.Generator().manual_seed(1))


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF_HUB_OFFLINE=1 and an empty hub cache (so a model cached on this machine changes nothing)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub_cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def _error(source: str, name: str, revision: str | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        hub.check_available(source, name, revision)
    assert "\n" not in str(caught.value)
    return caught.value


# --- loading a local directory --------------------------------------------------------------


def test_local_directory_loads_as_a_bridge_with_hookedtransformer_hooks_and_hf_numerics(tiny_dir, offline):
    import torch

    model = hub.load_hugging_face(str(tiny_dir), revision=None, device="cpu", dtype="float32")
    tokens = _tokens()
    with torch.no_grad():
        expected = _hf_model(tiny_dir)(tokens).logits
        logits, cache = model.run_with_cache(tokens)
    # Compatibility mode centres the unembedding, as HookedTransformer does: logits move by a
    # constant per position, so compare them centred, and compare log-probs outright.
    centred = logits - logits.mean(-1, keepdim=True)
    torch.testing.assert_close(centred, expected - expected.mean(-1, keepdim=True), atol=1e-4, rtol=0)
    torch.testing.assert_close(logits.log_softmax(-1), expected.log_softmax(-1), atol=1e-4, rtol=0)
    assert cache["blocks.0.hook_resid_pre"].shape == (3, 12, D_MODEL)
    assert cache["blocks.1.attn.hook_pattern"].shape == (3, 4, 12, 12)


def test_without_compatibility_mode_logits_are_the_hf_models(tiny_dir, offline):
    import torch

    model = hub.load_hugging_face(str(tiny_dir), revision=None, device="cpu", dtype="float32",
                                  compatibility_mode=False)
    tokens = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), _hf_model(tiny_dir)(tokens).logits, atol=1e-4, rtol=0)


@pytest.mark.hooked_transformer
def test_compatibility_mode_matches_a_hookedtransformer_of_the_same_weights(tiny_dir, offline):
    """The bridge in compatibility mode against HookedTransformer's own loading path, activations too."""
    import torch
    import transformer_lens.loading_from_pretrained as loading
    from transformer_lens import HookedTransformer

    cfg = loading.get_pretrained_model_config(str(tiny_dir), fold_ln=True, device="cpu", dtype=torch.float32)
    reference = HookedTransformer(cfg, move_to_device=False)
    reference.load_and_process_state_dict(
        loading.get_pretrained_state_dict(str(tiny_dir), cfg, _hf_model(tiny_dir)),
        fold_ln=True, center_writing_weights=True, center_unembed=True, fold_value_biases=True,
    )
    bridge = hub.load_hugging_face(str(tiny_dir), revision=None, device="cpu", dtype="float32")
    tokens = _tokens()
    with torch.no_grad():
        expected_logits, expected = reference.run_with_cache(tokens)
        logits, cache = bridge.run_with_cache(tokens)
    torch.testing.assert_close(logits, expected_logits, atol=1e-4, rtol=0)
    for name in ("blocks.0.hook_resid_pre", "blocks.1.attn.hook_pattern", "blocks.1.hook_mlp_out",
                 "blocks.1.hook_resid_post", "ln_final.hook_normalized"):
        torch.testing.assert_close(cache[name], expected[name], atol=1e-4, rtol=0, msg=name)


# --- pre-flight -----------------------------------------------------------------------------


@pytest.mark.parametrize("source,key", [("hf", "name_or_path"),
                                        pytest.param("tl", "name", marks=pytest.mark.hooked_transformer)])
def test_a_missing_directory_is_named(tmp_path, offline, source, key):
    missing = str(tmp_path / "no_such_model")
    error = _error(source, missing)
    assert error.key == key
    assert f"found no directory at '{missing}'" in error.message
    assert "expected an existing directory" in error.message


@pytest.mark.hooked_transformer
def test_an_unknown_transformer_lens_name_gets_a_suggestion(offline):
    error = _error("tl", "gpt3-nano")
    assert error.key == "name"
    assert "found 'gpt3-nano'" in error.message
    assert error.suggestion and error.suggestion.startswith("did you mean")
    assert _error("tl", "pythia-70n").suggestion == "did you mean 'pythia-70m'?"


@pytest.mark.hooked_transformer
@pytest.mark.parametrize("name", ["gpt2-small", "pythia-70m"])
def test_a_real_transformer_lens_model_not_cached_offline_is_refused_with_the_options(offline, name):
    error = _error("tl", name)
    assert error.key == "name"
    assert f"model '{name}'" in error.message
    assert "not in the local Hugging Face cache" in error.message
    assert "HF_HUB_OFFLINE is set" in error.message
    assert hub.OFFLINE_OPTIONS in error.message and "offline" in error.message


@pytest.mark.hooked_transformer
def test_a_transformer_lens_name_is_a_name_even_where_a_directory_has_it(offline, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gpt2").mkdir()
    assert "model 'gpt2' cannot be had" in _error("tl", "gpt2").message


def test_a_hub_id_not_cached_offline_is_refused(offline):
    error = _error("hf", "EleutherAI/pythia-70m", revision="step1000")
    assert error.key == "name_or_path"
    assert "model 'EleutherAI/pythia-70m' at revision 'step1000' cannot be had" in error.message
    assert hub.OFFLINE_OPTIONS in error.message


def test_a_saved_directory_passes_and_a_broken_one_is_named(tiny_dir, tmp_path, offline):
    hub.check_available("hf", str(tiny_dir))
    no_tokenizer = tmp_path / "weights_only"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_dir / name, no_tokenizer / name)
    assert "expected a tokenizer saved beside the model" in _error("hf", str(no_tokenizer)).message
    assert "found no config.json in" in _error("hf", str(tmp_path)).message
    assert "found a file at" in _error("hf", str(tiny_dir / "config.json")).message


@pytest.mark.hooked_transformer
def test_a_saved_directory_is_no_transformer_lens_name(tiny_dir, offline):
    tl_error = _error("tl", str(tiny_dir))
    assert "expected a TransformerLens model name" in tl_error.message
    assert tl_error.suggestion == f"load it with model=hf model.name_or_path={tiny_dir}"


def test_an_invalid_hub_id_is_named(offline):
    assert "expected a hub id ('org/model') or an existing directory, found 'a/b/c'" in _error("hf", "a/b/c").message


def test_the_hub_is_probed_once_per_process(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    for variable in ("HF_ENDPOINT", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    calls = []
    monkeypatch.setattr(access, "_connects", lambda host, port, timeout: calls.append((host, port)) or False)
    access._hub_probe.cache_clear()
    try:
        assert access.hub_unreachable_reason() == "no connection to huggingface.co within 3 s"
        assert access.hub_unreachable_reason() is not None
        assert calls == [("huggingface.co", 443)]
    finally:
        access._hub_probe.cache_clear()


def test_the_probe_goes_to_the_https_proxy_when_one_is_set(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert access._first_hop("huggingface.co", 443) == ("proxy.internal", 3128)


def test_a_probe_that_cannot_resolve_fails_within_its_timeout():
    import time

    started = time.monotonic()
    assert access._connects("hub-probe.invalid", 443, 0.5) is False
    assert time.monotonic() - started < 2


# --- a hub cache faked from the tiny model: both loaders by name, offline ----------------


@pytest.fixture
def cached_gpt2(tiny_dir, offline) -> Path:
    """The tiny GPT-2 laid out as huggingface_hub caches 'gpt2' (refs/main -> snapshots/<commit>)."""
    repo = offline / "models--gpt2"
    snapshot = repo / "snapshots" / FAKE_COMMIT
    shutil.copytree(tiny_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(FAKE_COMMIT)
    return snapshot


@pytest.mark.hooked_transformer
def test_cached_hub_models_pass_preflight_and_both_loaders_agree(cached_gpt2):
    import torch

    hub.check_available("tl", "gpt2-small")
    hub.check_available("hf", "gpt2")
    assert "at revision 'v2'" in _error("hf", "gpt2", revision="v2").message  # another revision is not cached

    hooked = hub.load_transformer_lens("gpt2-small", revision=None, device="cpu", dtype="float32", fold_ln=True,
                                       center_writing_weights=True, center_unembed=True, fold_value_biases=True)
    bridge = hub.load_hugging_face("gpt2", revision=None, device="cpu", dtype="float32")
    tokens = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(bridge(tokens), hooked(tokens), atol=1e-4, rtol=0)

    identity = hub.model_identity(hooked, source="tl", name="gpt2-small", revision=None)
    assert identity["revision"] == FAKE_COMMIT  # what "main" resolved to
    assert hub.model_identity(bridge, source="hf", name="gpt2", revision="main")["revision"] == "main"


@pytest.mark.hooked_transformer
def test_transformer_lens_loader_passes_its_options(monkeypatch):
    import torch
    from transformer_lens import HookedTransformer

    seen = {}

    class Loaded:
        def eval(self):
            seen["eval"] = True
            return self

    def from_pretrained(name, **kwargs):
        seen.update(kwargs, name=name)
        return Loaded()

    monkeypatch.setattr(HookedTransformer, "from_pretrained", from_pretrained)
    hub.load_transformer_lens("pythia-70m", revision="step1000", device="cpu", dtype="bfloat16", fold_ln=False,
                              center_writing_weights=False, center_unembed=True, fold_value_biases=False)
    assert seen == {"name": "pythia-70m", "revision": "step1000", "device": "cpu", "dtype": torch.bfloat16,
                    "fold_ln": False, "center_writing_weights": False, "center_unembed": True,
                    "fold_value_biases": False, "eval": True}


# --- identity -------------------------------------------------------------------------------


def test_identity_counts_the_checkpoints_parameters_and_its_checksum_is_stable(tiny_dir, offline):
    import torch

    bridge = hub.load_hugging_face(str(tiny_dir), revision=None, device="cpu", dtype="float32")
    first = hub.model_identity(bridge, source="hf", name=str(tiny_dir), revision=None)
    assert first == hub.model_identity(bridge, source="hf", name=str(tiny_dir), revision=None)
    assert first["n_params"] == _hf_model(tiny_dir).num_parameters()
    assert first["source"] == "hf" and first["name"] == str(tiny_dir)
    assert (first["revision"], first["dtype"], first["device"]) == ("", "float32", "cpu")
    assert len(str(first["checksum"])) == 16

    with torch.no_grad():
        bridge.blocks[0].mlp.out.weight[0, 0] += 1.0
    assert hub.model_identity(bridge, source="hf", name=str(tiny_dir), revision=None)["checksum"] != first["checksum"]


def test_identity_of_a_bfloat16_hookedtransformer():
    import torch
    from tests.support.models import tiny_hooked_transformer

    cfg = dict(n_layers=1, d_model=16, n_ctx=8, d_head=4, n_heads=4, d_vocab=20, act_fn="gelu", seed=0, device="cpu",
               dtype=torch.bfloat16)
    model = tiny_hooked_transformer(**cfg)
    identity = hub.model_identity(model, source="config", name=None, revision=None)
    assert identity["n_params"] == sum(p.numel() for p in model.parameters())
    assert (identity["name"], identity["revision"], identity["dtype"]) == ("", "", "bfloat16")
    assert identity["checksum"] == hub.model_identity(tiny_hooked_transformer(**cfg), source="config", name=None,
                                                      revision=None)["checksum"]  # same seed, same weights
