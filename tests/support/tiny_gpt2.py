"""A tiny GPT-2 checkpoint and tokenizer saved with save_pretrained: a hub model without the hub."""

from __future__ import annotations

from pathlib import Path
from typing import Any

D_MODEL, N_LAYERS, VOCAB, N_CTX = 32, 2, 128, 64
FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"
SENTENCES = [
    "the cat sat on the mat",
    "a dog ran in the park",
    "induction heads copy the token that followed",
    "the quick brown fox jumps over the lazy dog",
]


def _tokenizer():
    """A word-level tokenizer trained here, so nothing is downloaded."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=["<unk>", "<|endoftext|>"]))
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="<unk>", bos_token="<|endoftext|>",
        eos_token="<|endoftext|>", pad_token="<|endoftext|>",
    )


def save_tiny_gpt2(directory: Path) -> Path:
    """Write a seeded 2-layer GPT2LMHeadModel and a word-level tokenizer to ``directory``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    # n_ctx: transformers 5 dropped it from GPT2Config, but TransformerLens's GPT-2 config
    # conversion still reads it (hub checkpoints carry it in config.json).
    config = GPT2Config(vocab_size=VOCAB, n_positions=N_CTX, n_ctx=N_CTX, n_embd=D_MODEL, n_layer=N_LAYERS,
                        n_head=4, bos_token_id=1, eos_token_id=1)
    GPT2LMHeadModel(config).save_pretrained(directory)
    _tokenizer().save_pretrained(directory)
    return directory


def load_tiny_gpt2(directory: Path, kind: str, processed: bool, monkeypatch: Any) -> Any:
    """The checkpoint through interp_pipeline's own loaders: ``kind`` "bridge" (load_hugging_face,
    compatibility mode = ``processed``) or "hooked" (load_transformer_lens: HookedTransformer.from_pretrained's
    own path, folding and centring = ``processed``; TransformerLens's name check is bypassed for the directory)."""
    from interp_pipeline.models import hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if kind == "bridge":
        return hub.load_hugging_face(str(directory), revision=None, device="cpu", dtype="float32",
                                     compatibility_mode=processed)
    import transformer_lens.loading_from_pretrained as loading

    monkeypatch.setattr(loading, "get_official_model_name", lambda name: name)
    return hub.load_transformer_lens(str(directory), revision=None, device="cpu", dtype="float32",
                                     fold_ln=processed, center_writing_weights=processed,
                                     center_unembed=processed, fold_value_biases=processed)
