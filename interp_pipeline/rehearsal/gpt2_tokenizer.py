"""GPT-2's real tokenizer without the hub: the BPE ranks openai-whisper ships, converted by transformers.

openai-whisper's source distribution carries ``whisper/assets/gpt2.tiktoken`` (GPT-2's
50,256 byte-level BPE ranks, base64 token and rank per line); scripts/setup.sh fetches a
pinned sdist, checks its sha256 and copies the file to :func:`tiktoken_path`. transformers'
``TikTokenConverter`` rebuilds the merges from the ranks; GPT-2's own split pattern (not the
converter's default, which is cl100k's) and ``<|endoftext|>`` as id 50256 make it GPT-2's.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from interp_pipeline.common.paths import PACKAGE_DIR

# Pinned in scripts/setup.sh too (which downloads and verifies it); checked again here on use.
WHISPER_VERSION = "20250625"
TIKTOKEN_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
TIKTOKEN_ENV = "INTERP_PIPELINE_GPT2_TIKTOKEN"
# GPT-2's pre-tokenizer regex (tiktoken's "gpt2" encoding, and whisper's): leading spaces stay on words.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
END_OF_TEXT = "<|endoftext|>"
N_RANKS = 50256  # ranks 0..50255; <|endoftext|> is 50256, vocab 50257
N_POSITIONS = 1024


def tiktoken_path() -> Path:
    """``$INTERP_PIPELINE_GPT2_TIKTOKEN``, else ``<repo>/.cache/gpt2.tiktoken`` (where setup.sh puts it)."""
    env = os.environ.get(TIKTOKEN_ENV)
    return Path(env).expanduser() if env else PACKAGE_DIR.parent / ".cache" / "gpt2.tiktoken"


def require_tiktoken_file() -> Path:
    """The verified gpt2.tiktoken, or FileNotFoundError saying how to fetch it."""
    path = tiktoken_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"GPT-2's tokenizer file is missing: expected {path} (openai-whisper=={WHISPER_VERSION}'s "
            f"whisper/assets/gpt2.tiktoken); run `bash scripts/setup.sh` to fetch it, or point "
            f"{TIKTOKEN_ENV} at a copy")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != TIKTOKEN_SHA256:
        raise ValueError(f"{path} has sha256 {digest}, expected {TIKTOKEN_SHA256} (openai-whisper=="
                         f"{WHISPER_VERSION}'s gpt2.tiktoken); delete it and run `bash scripts/setup.sh`")
    return path


def gpt2_tokenizer() -> Any:
    """A ``GPT2TokenizerFast`` equal to the hub's ``gpt2`` tokenizer: same ids, same pre-tokenizer."""
    from transformers import GPT2TokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    converter = TikTokenConverter(vocab_file=str(require_tiktoken_file()), pattern=GPT2_PATTERN,
                                  extra_special_tokens=[END_OF_TEXT])
    backend = converter.converted()
    if backend.get_vocab_size() != N_RANKS + 1 or backend.token_to_id(END_OF_TEXT) != N_RANKS:
        raise ValueError(f"expected {N_RANKS} ranks and {END_OF_TEXT} at {N_RANKS}, found a vocabulary of "
                         f"{backend.get_vocab_size()} with {END_OF_TEXT} at {backend.token_to_id(END_OF_TEXT)}")
    # The hub's gpt2 tokenizer: <|endoftext|> is bos, eos and unk; no pad token (TransformerLens adds one).
    return GPT2TokenizerFast(tokenizer_object=backend, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT,
                             unk_token=END_OF_TEXT, model_max_length=N_POSITIONS, add_prefix_space=False)
