"""The rehearsal's HF_HOME: laid out as huggingface_hub caches a repository, and safe to point anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interp_pipeline.rehearsal.hf_cache import MODEL_REPO, SAE_HOOK, SAE_REPO, build


def test_huggingface_hub_resolves_the_snapshots_through_refs_main(rehearsal_hf_home):
    from huggingface_hub import try_to_load_from_cache

    hub = Path(rehearsal_hf_home) / "hub"
    commit = (hub / "models--gpt2" / "refs" / "main").read_text()
    for repo, filename in ((MODEL_REPO, "config.json"), (MODEL_REPO, "model.safetensors"),
                           (MODEL_REPO, "tokenizer.json"), (SAE_REPO, f"{SAE_HOOK}/cfg.json"),
                           (SAE_REPO, f"{SAE_HOOK}/sae_weights.safetensors"),
                           (SAE_REPO, f"{SAE_HOOK}/sparsity.safetensors")):
        found = try_to_load_from_cache(repo, filename, cache_dir=str(hub))
        assert isinstance(found, str) and Path(found).is_symlink(), (repo, filename)
        if repo == MODEL_REPO:
            assert f"/snapshots/{commit}/" in found
    config = json.loads(Path(try_to_load_from_cache(MODEL_REPO, "config.json", cache_dir=str(hub))).read_text())
    assert (config["n_layer"], config["n_head"], config["n_embd"], config["vocab_size"]) == (12, 12, 96, 50257)


def test_a_built_cache_is_reused(rehearsal_hf_home):
    marker = Path(rehearsal_hf_home) / "rehearsal.json"
    before = marker.stat().st_mtime_ns
    build(rehearsal_hf_home)
    assert marker.stat().st_mtime_ns == before


def test_the_builder_never_clears_a_directory_it_did_not_write(tmp_path):
    """--hf-home may name someone's real Hugging Face cache: a non-empty directory without the
    rehearsal's marker file is refused before anything is written or removed."""
    theirs = tmp_path / "huggingface"
    (theirs / "hub").mkdir(parents=True)
    (theirs / "token").write_text("x")
    with pytest.raises(FileExistsError, match="not a rehearsal cache"):
        build(theirs)
    assert (theirs / "token").read_text() == "x"
