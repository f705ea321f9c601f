"""Tests of the patching package; ``byte_level_bpe`` gives them a GPT-2-style tokenizer built offline."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

EOS = "<|endoftext|>"


def byte_level_bpe(texts: Iterable[str], vocab_size: int = 1000) -> Any:
    """A byte-level BPE tokenizer like GPT-2's (" John" one token with its leading space, no
    pad token, BOS = EOS) trained here on ``texts``: nothing is downloaded. A word common in
    ``texts`` becomes one token; a word absent from them is split into several."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(list(texts), trainer)
    # add_bos_token: TransformerLens reloads a tokenizer by name unless it is set (tasks/tokenizers.py).
    return PreTrainedTokenizerFast(tokenizer_object=core, name_or_path="byte_level_bpe", add_bos_token=True,
                                   bos_token=EOS, eos_token=EOS)
