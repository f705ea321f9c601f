"""Adding a steering vector to the residual stream through a TransformerLens hook, while scoring and generating.

One forward hook on ``blocks.L.hook_<kind>`` adds ``coefficient x vector`` at the chosen positions; the
rest of the forward pass is the model's own, so a HookedTransformer and a TransformerBridge steer alike
(tests compare both with the vector added by hand in a plain loop over the blocks). Positions:

- ``all``: every position (CAA adds at every position after the instruction; a 1-row vector);
- ``last``: each prompt's last token, and while generating every token after it;
- ``front``: the vector's rows at ``start``, ``start`` + 1, ... (ActAdd: the prompt pair's difference,
  position by position, over the front of the user's prompt).

Generation is a plain sampling loop that reruns the whole sequence each step, so the hook always sees
absolute positions (with a key-value cache, ``front`` would have to know which pass it is in); prompts
here are short, so the quadratic cost does not matter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError

if TYPE_CHECKING:
    from torch import Generator, Tensor


def placement(vector: Tensor, coefficient: float, positions: str, batch: int, width: int, *, start: int = 0,
              last: Tensor | None = None) -> Tensor:
    """What the hook adds: [batch, width, d_model], ``coefficient`` x the vector's rows where ``positions`` say.

    ``last``: each row's last prompt position (``last``: added there and after it; default: width - 1)."""
    import torch

    rows, d_model = vector.shape
    added = torch.zeros(batch, width, d_model, dtype=vector.dtype)
    if positions == "all":
        if rows != 1:
            raise ConfigError("positions", f"expected a vector of one row for 'all', found {rows} rows (ActAdd's "
                                           "vector has one per position: positions: front)")
        added[:] = coefficient * vector[0]
    elif positions == "last":
        if rows != 1:
            raise ConfigError("positions", f"expected a vector of one row for 'last', found {rows} rows")
        ends = last if last is not None else torch.full((batch,), width - 1)
        mask = torch.arange(width).unsqueeze(0) >= ends.unsqueeze(1)
        added[mask] = coefficient * vector[0]
    elif positions == "front":
        stop = min(width, start + rows)
        if stop > start:
            added[:, start:stop] = coefficient * vector[:stop - start]
    else:
        raise ConfigError("positions", f"expected all, last or front, found {positions!r}")
    return added


def steering_hook(added: Tensor) -> Any:
    """A forward hook adding ``added`` [batch, width, d] to the activation (its first positions)."""

    def hook(activation: Tensor, hook: Any = None) -> Tensor:
        return activation + added[:, :activation.shape[1]].to(activation.device, activation.dtype)

    return hook


def steered_logits(model: Any, tokens: Tensor, vector: Tensor | None, layer: int, kind: str, coefficient: float,
                   positions: str, *, start: int = 0, last: Tensor | None = None,
                   batch_size_prompts: int = 64) -> Tensor:
    """The model's logits [B, P, V] on ``tokens`` with the vector added (``vector`` None: unsteered), on the CPU."""
    import torch

    out = []
    name = f"blocks.{layer}.hook_{kind}"
    with torch.inference_mode():
        for begin in range(0, len(tokens), batch_size_prompts):
            batch = tokens[begin:begin + batch_size_prompts].to(model.cfg.device)
            if vector is None:
                logits = model(batch, return_type="logits")
            else:
                ends = None if last is None else last[begin:begin + batch_size_prompts]
                added = placement(vector, coefficient, positions, len(batch), batch.shape[1], start=start, last=ends)
                logits = model.run_with_hooks(batch, return_type="logits",
                                              fwd_hooks=[(name, steering_hook(added))])
            out.append(logits.float().cpu())
    return torch.cat(out)


def generate(model: Any, prompt: str, vector: Tensor | None, layer: int, kind: str, coefficient: float,
             positions: str, *, start: int, max_new_tokens: int, temperature: float, top_p: float,
             generator: Generator) -> str:
    """``prompt`` and its completion by ``max_new_tokens`` tokens (greedy at temperature 0, else nucleus sampling)."""
    import torch

    tokens = model.to_tokens(prompt).cpu()
    if tokens.shape[1] + max_new_tokens > model.cfg.n_ctx:
        raise ConfigError("max_new_tokens", f"expected prompt + new tokens within n_ctx={model.cfg.n_ctx}, found "
                                            f"{tokens.shape[1]} + {max_new_tokens}")
    prompt_last = torch.tensor([tokens.shape[1] - 1])
    for _ in range(max_new_tokens):
        logits = steered_logits(model, tokens, vector, layer, kind, coefficient, positions, start=start,
                                last=prompt_last)[0, -1]
        tokens = torch.cat([tokens, _sample(logits, temperature, top_p, generator).view(1, 1)], dim=1)
    # The whole text decoded at once, so that each tokenizer puts its own spaces between words.
    return model.tokenizer.decode(tokens[0].tolist(), skip_special_tokens=True)


def _sample(logits: Tensor, temperature: float, top_p: float, generator: Generator) -> Tensor:
    import torch

    if temperature == 0:
        return logits.argmax()
    probs = torch.softmax(logits / temperature, dim=-1)
    ordered, index = probs.sort(descending=True)
    keep = ordered.cumsum(0) - ordered < top_p  # the smallest prefix holding top_p of the mass
    ordered = ordered * keep
    return index[torch.multinomial(ordered / ordered.sum(), 1, generator=generator)][0]
