"""The tiny models, tokens, tokenizers and prompt pairs the tests build, in one place.

Many tests assert numbers of these models, so each builder makes exactly the model its
caller spells out: ``tiny_hooked_transformer`` adds no config field of its own (the seed,
the device and the dtype included), and the shaped builders below keep their defaults.
Every model comes back in eval mode (TransformerLens models have no dropout: the mode
changes no number; the trainer sets it itself).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# --- models ---------------------------------------------------------------------------


def tiny_hooked_transformer(*, tokenizer: Any = None, **cfg: Any) -> Any:
    """``HookedTransformer(HookedTransformerConfig(**cfg), tokenizer=tokenizer)``, in eval mode; on
    TransformerLens 4 the pipeline's own config-built model there (models.from_config: a boot_native
    TransformerBridge), so the same tests run on both.

    No defaults: ``cfg`` is every config field the test sets (a config with a seed seeds
    torch, ``random`` and numpy when it is built, as HookedTransformerConfig does)."""
    from interp_pipeline.models.from_config import build, make_config

    return build(make_config(cfg), tokenizer=tokenizer)


def task_model(task: Any, *, with_tokenizer: bool = True, **cfg: Any) -> Any:
    """A tiny model sized for a toy task: ``cfg`` plus the task's ``model_config()`` (vocabulary,
    context, BOS), with the task's tokenizer unless ``with_tokenizer`` is false."""
    return tiny_hooked_transformer(**cfg, **task.model_config(),
                                   tokenizer=task.tokenizer() if with_tokenizer else None)


def tiny_model(*, n_layers: int = 2, n_heads: int = 4, attn_only: bool = False, normalization_type: str | None = "LN",
               d_vocab: int = 50, seed: int = 0, **extra: Any) -> Any:
    """The patching tests' model: heads of 8, MLPs of 64 (unless attention-only), 24 positions, GELU."""
    return tiny_hooked_transformer(
        n_layers=n_layers, d_model=8 * n_heads, n_heads=n_heads, d_head=8, d_mlp=None if attn_only else 64,
        d_vocab=d_vocab, n_ctx=24, act_fn="gelu", attn_only=attn_only, normalization_type=normalization_type,
        seed=seed, **extra,
    )


# --- tokens and prompt pairs ----------------------------------------------------------

# Hooks of tiny_model_and_tokens's model that the activation-cache tests store, and the
# cache stage's params for them (also used by tests/activations/kill_and_resume.py).
HOOKS = ["blocks.0.hook_resid_post", "blocks.1.attn.hook_z"]
CACHE_PARAMS = dict(hooks=HOOKS, batch_size_prompts=4, chunk_rows=24)


def tiny_model_and_tokens(n_sequences: int = 30, seq_len: int = 12, d_model: int = 16):
    """The activation-cache and SAE tests' 2-layer ReLU model and seeded random tokens (ids 1..49)."""
    import torch

    model = tiny_hooked_transformer(n_layers=2, d_model=d_model, n_heads=2, d_head=d_model // 2, d_mlp=2 * d_model,
                                    n_ctx=32, d_vocab=50, act_fn="relu", seed=0)
    tokens = torch.randint(1, 50, (n_sequences, seq_len), generator=torch.Generator().manual_seed(0))
    return model, tokens


def random_pairs(n_prompts: int, n_pos: int, *, differing: tuple[int, ...] = (2, 4), d_vocab: int = 50,
                 seed: int = 0) -> dict[str, Any]:
    """Clean and corrupted prompts differing at ``differing``; END varies per prompt."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, d_vocab, (n_prompts, n_pos), generator=generator)
    corrupted = clean.clone()
    corrupted[:, list(differing)] = torch.randint(0, d_vocab, (n_prompts, len(differing)), generator=generator)
    end = n_pos - 1 - torch.arange(n_prompts) % 2  # some prompts end one token early (right padding)
    loss_mask = torch.zeros(n_prompts, n_pos, dtype=torch.bool)
    loss_mask[:, n_pos // 2:] = True
    return {
        "clean": clean, "corrupted": corrupted,
        "answer": torch.randint(0, d_vocab, (n_prompts,), generator=generator),
        "wrong": torch.randint(0, d_vocab, (n_prompts,), generator=generator),
        "end": end, "length": end + 1,
        "targets": torch.randint(0, d_vocab, (n_prompts, n_pos), generator=generator), "loss_mask": loss_mask,
    }


# --- tokenizers -----------------------------------------------------------------------

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
