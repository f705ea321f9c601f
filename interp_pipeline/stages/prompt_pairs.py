"""Prompt-pair datasets for activation patching: IOI prompts generated in code, pairs listed in
YAML, and clean/corrupted induction probes.

Every stage takes the model first (its tokenizer, ``cfg.n_ctx`` and ``cfg.d_vocab``) and
returns ``pairs``: the dict of CPU tensors described in interp_pipeline/patching/prompt_pairs.py
(clean and corrupted tokens, answer and wrong tokens, END positions, loss targets, and
for IOI the io/s1/s2 positions), which the patching stages read. Their params come through a
data group (``data``, ``pairs``); the work is interp_pipeline.patching.pair_datasets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp_pipeline.patching import pair_datasets
from interp_pipeline.patching.config import IOIPromptsConfig, PromptPairsConfig, RepeatedPairsConfig
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor
    from transformer_lens import HookedTransformer

PAIR_METRICS = ("pairs_kept", "pairs_dropped", "seq_len", "pad_fraction")


@stage("ioi_prompts", outputs=("pairs",), config=IOIPromptsConfig, preflight=pair_datasets.check_ioi,
       check_shapes=pair_datasets.check_ioi_inputs, metrics=PAIR_METRICS, summary=("pairs_kept", "pairs_dropped"))
def ioi_prompts(model: HookedTransformer, settings: IOIPromptsConfig,
                tracker: Tracker = NULL_TRACKER) -> dict[str, Tensor]:
    """``n_prompts`` IOI prompt pairs from tasks/ioi_prompts.py's generator, tokenized and aligned.

    ``corruption``: "abc" (a third name at S2) or "s2_swap" (the IO name at S2). Pairs the
    model's tokenizer does not align (a name of several tokens, a prompt longer than
    n_ctx) are dropped; fewer than ``min_pairs`` left is an error. Logs ``pairs_kept`` and
    ``pairs_dropped``. The toy IOI model's tokenizer splits off "," and ".", so plain text
    suits it too; ``spaced_punctuation`` writes "shops ." for word tokenizers that do not.
    """
    return pair_datasets.ioi_pairs(model, settings, tracker)


@stage("prompt_pairs", outputs=("pairs",), config=PromptPairsConfig, preflight=pair_datasets.check_written,
       check_shapes=pair_datasets.check_written_inputs, metrics=PAIR_METRICS, summary=("pairs_kept", "seq_len"))
def prompt_pairs(model: HookedTransformer, settings: PromptPairsConfig,
                 tracker: Tracker = NULL_TRACKER) -> dict[str, Tensor]:
    """Clean/corrupted prompt pairs written in YAML (``{clean, corrupted, answer, wrong}`` each):
    any task patched without code.

    Every pair must align: the same number of tokens in both prompts, and one token each
    for answer and wrong (with its leading space: " Mary"); otherwise the error names the
    pair, e.g. ``pairs[3].answer: expected a single token, found 2 tokens [' Ma', 'ry']``.
    ``loss_positions``: the positions the loss metric averages over, "end" (the answer)
    or "all" (every prompt token's next-token loss, the answer's at END).
    """
    return pair_datasets.written_pairs(model, settings, tracker)


@stage("repeated_pairs", outputs=("pairs",), config=RepeatedPairsConfig, check_shapes=pair_datasets.check_repeated_inputs,
       metrics=("n_pairs", "seq_len"))
def repeated_pairs(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], settings: RepeatedPairsConfig,
                   tracker: Tracker = NULL_TRACKER) -> dict[str, Tensor]:
    """Prompt pairs for patching induction: clean [BOS] r r (the first ``n_pairs`` rows of a
    repeated_tokens probe), corrupted [BOS] r' r with a fresh first half r'.

    The second half is the same in both, and only the clean run can predict it from
    the first: the ``loss`` metric reads the second half's predictions (``loss_mask``).
    For ``logit_diff`` the answer is the last token, the wrong answer the token at the
    same place in r'. The pairs dict is the one patching/prompt_pairs.py describes.
    """
    return pair_datasets.repeated_token_pairs(model, tokens, settings, tracker)
