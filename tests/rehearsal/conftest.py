"""One rehearsal Hugging Face cache (GPT-2 of random weights, GPT-2's real tokenizer, a random SAE)
for the whole session: building it converts the tokenizer and writes ~330 MB (~300 of them the
Gemma-3-shaped model of interp_pipeline/rehearsal/gemma3.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def rehearsal_hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from interp_pipeline.rehearsal.hf_cache import build

    hf_home = tmp_path_factory.mktemp("rehearsal") / "hf_home"
    build(hf_home)
    return hf_home


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    """GPT-2's tokenizer from whisper's gpt2.tiktoken; a missing file fails here, naming scripts/setup.sh."""
    from interp_pipeline.rehearsal.gpt2_tokenizer import gpt2_tokenizer

    return gpt2_tokenizer()
