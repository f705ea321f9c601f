"""Word-level tokenizers built in code, wrapped as Hugging Face fast tokenizers.

So that `to_tokens`, `to_str_tokens` and `tokenizer.decode` work on toy models as
they do on GPT-2, and the tokenizer can be saved beside the weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

# The toy tasks' special tokens, ids 0 and 1 of their vocabularies (BOS is id 0: a task's
# batches write it as a literal 0).
BOS, PAD = "<bos>", "<pad>"
SPECIALS = (BOS, PAD)


def word_level_tokenizer(
    words: list[str], *, bos: str, pad: str, unk: str | None = None
) -> PreTrainedTokenizerFast:
    """Token id = position in ``words``; text is split on whitespace.

    Specials must be among ``words``. BOS doubles as EOS (as in GPT-2): TransformerLens
    gives a tokenizer lacking either one a token outside the vocabulary, which
    ``save_pretrained`` then writes as an extra id. The tokenizer prepends BOS itself;
    TransformerLens removes it again where a model's ``default_prepend_bos`` is false.
    """
    from tokenizers import Tokenizer, decoders
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    if len(set(words)) != len(words):
        raise ValueError("tokenizer words must be unique")
    for special in (bos, pad, unk):
        if special is not None and special not in words:
            raise ValueError(f"special token {special!r} is not in the vocabulary")
    vocab = {word: index for index, word in enumerate(words)}
    # Without an unk token in the vocabulary an unknown word is an error, not a silent id.
    core = Tokenizer(WordLevel(vocab, unk_token=unk or "<unk>"))
    core.pre_tokenizer = WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    specials = {"bos_token": bos, "eos_token": bos, "pad_token": pad}
    if unk is not None:
        specials["unk_token"] = unk
    # TransformerLens's set_tokenizer reloads a tokenizer by `name_or_path` to turn on
    # add_bos_token, unless it is on already; one built in memory has no path to reload.
    return PreTrainedTokenizerFast(
        tokenizer_object=core, name_or_path="word_level", add_bos_token=True, **specials
    )
