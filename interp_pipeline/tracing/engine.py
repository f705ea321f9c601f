"""Causal tracing (Meng et al. 2022, section 2.1), batched and started at the restored layer.

For each prompt: a clean run; ``samples`` corrupted runs, Gaussian noise added to the
token embeddings (``hook_embed``) at the subject's positions; then, for each layer L and
position t, corrupted runs in which one clean activation is put back:

- ``hidden``: the residual stream after block L (``blocks.L.hook_resid_post``) at t;
- ``mlp`` / ``attn``: the MLP / attention outputs (``hook_mlp_out`` / ``hook_attn_out``)
  at t in a window of layers around L: ``range(max(0, L - w // 2), min(n_layers, L - (-w // 2)))``,
  as the paper's ``trace_with_repatch`` windows them.

The score is the object's probability at the last position, averaged over the noise
samples (the paper's ``trace_with_patch``); the indirect effect of a restoration is that
score minus the corrupted run's.

TransformerLens runs one forward per restoration in a hook loop (what tests/tracing
check against). This engine gives the same numbers with the patching engine's savings
(patching/engine.py, patching/forward.py):

1. a restoration at layer L cannot change blocks before it, so the run starts there from
   the corrupted run's cached residual stream (a hidden-state restoration edits that
   cached stream and needs no hook at all);
2. every position of a layer, every noise sample and several prompts share one batch;
3. only the last position is unembedded;
4. positions before the subject are not run: the noise cannot reach them, so restoring them
   leaves the corrupted run's score;
5. a restoration at position p does not change positions before p, so each restored run computes
   positions p.. only and attends to the corrupted run's keys and values for the rest
   (tracing/prefix_cache.py). Positions then go one per forward (each has its own prefix); samples
   and prompts still share it.

A TransformerBridge of an architecture the fast path does not know (models/bridge_blocks.py), or a
shortformer model, takes the generic path: full ``run_with_hooks`` forwards, still batched.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Generator, Tensor

KINDS = ("hidden", "mlp", "attn")
RESTORED_HOOK = {"hidden": "hook_resid_post", "mlp": "hook_mlp_out", "attn": "hook_attn_out"}
NOISE_HOOK = "hook_embed"  # the token embedding, before positions are added: what the paper noises
PAPER_WINDOW, PAPER_LAYERS = 10, 48  # GPT-2 XL's window in the paper


def default_window(n_layers: int) -> int:
    """The paper's 10 of 48 layers, scaled to ``n_layers`` (at least 1)."""
    return max(1, round(PAPER_WINDOW * n_layers / PAPER_LAYERS))


def window_layers(layer: int, window: int, n_layers: int) -> range:
    """The layers restored together for a window centred on ``layer`` (the paper's ``trace_with_repatch``)."""
    return range(max(0, layer - window // 2), min(n_layers, layer - (-window // 2)))


def noise_for(prompt: int, seed: int, samples: int, n_subject: int, d_model: int) -> Tensor:
    """The standard normal draws of prompt ``prompt`` (its index in the prompt set): [samples,
    n_subject, d_model]; scaled by the noise std where used. Seeded per prompt, so a prompt's
    result does not depend on which others share its batch."""
    import torch

    generator = torch.Generator().manual_seed(seed * 1_000_003 + prompt)
    return torch.randn(samples, n_subject, d_model, generator=generator)


def subject_token_ids(model: Any, facts: Mapping[str, Tensor]) -> list[list[int]]:
    """Each prompt's subject as ROME's ``collect_embedding_std`` tokenizes it: the subject string
    alone (``tokenizer.encode(subject)``), so GPT-2's first subject token is "Space", not the
    prompt's " Space". The string is the prompt's subject tokens decoded, stripped of the space
    before it (tokenize_facts refuses subjects that share a token with the text around them). No
    special tokens are added: ROME's models (GPT-2, GPT-J, NeoX) add none. Without a tokenizer, the
    prompt's own subject tokens."""
    tokenizer = getattr(model, "tokenizer", None)
    seen: dict[tuple[int, ...], list[int]] = {}
    out = []
    for i in range(len(facts["tokens"])):
        ids = tuple(facts["tokens"][i, int(facts["subject_first"][i]):int(facts["subject_last"][i]) + 1].tolist())
        if ids not in seen:
            alone = list(ids)
            if tokenizer is not None:
                alone = list(tokenizer(tokenizer.decode(list(ids)).strip(), add_special_tokens=False)["input_ids"])
            seen[ids] = alone or list(ids)
        out.append(seen[ids])
    return out


def embedding_std(model: Any, facts: Mapping[str, Tensor]) -> float:
    """The noise unit of Meng et al. (2022): the std of the subjects' token embeddings, as ROME's
    ``collect_embedding_std`` (experiments/causal_trace.py) computes it: every element of every
    subject token's embedding row, one subject per prompt, tokenized alone (:func:`subject_token_ids`),
    the unbiased ``Tensor.std``. The embeddings are the checkpoint's, before TransformerLens centres
    them (interp_pipeline.models.embeddings), so the std is the same on a HookedTransformer and a
    TransformerBridge whatever their loading options. From token counts, so memory does not grow
    with the prompts."""
    import torch

    from interp_pipeline.models.embeddings import unprocessed_token_embeddings

    embeddings = unprocessed_token_embeddings(model)
    counts = torch.zeros(embeddings.shape[0], dtype=torch.float64)
    subjects = [torch.tensor(ids, dtype=torch.int64) for ids in subject_token_ids(model, facts)]
    every = torch.cat(subjects)
    counts.index_add_(0, every, torch.ones(len(every), dtype=torch.float64))
    used = counts.nonzero().squeeze(1)
    rows = embeddings[used].double()
    weights = counts[used][:, None].expand_as(rows)
    n = weights.sum()
    mean = (rows * weights).sum() / n
    variance = (((rows - mean) ** 2) * weights).sum() / (n - 1)
    return float(variance.sqrt())


@dataclass
class PromptTrace:
    """One group of prompts traced: ``scores[kind]`` [G, n_layers, P] is the object's probability
    with that restoration (positions past a prompt's last token are NaN); ``clean`` and
    ``corrupted`` [G] the object's probability in the clean and the corrupted runs;
    ``clean_top1`` [G] whether the clean run predicts the object."""

    rows: Tensor
    scores: dict[str, Tensor]
    clean: Tensor
    corrupted: Tensor
    clean_top1: Tensor


class CausalTracer:
    """Traces prompts of one facts dict on one model; see the module docstring. ``batch_size_prompts``:
    sequences in one forward pass (noised copies of prompts: prompts x samples x restored positions),
    which sizes the groups of prompts; reusing the prefix (``reuse_prefix``), a forward restores one
    position, so it holds a group's prompts x samples."""

    def __init__(self, model: Any, facts: Mapping[str, Tensor], *, noise_std: float, samples: int, window: int,
                 batch_size_prompts: int, kinds: tuple[str, ...] = KINDS, seed: int = 0, fast: bool | None = None,
                 reuse_prefix: bool = True):
        from interp_pipeline.patching.forward import supports_fast_path

        self.model = model
        self.facts = facts
        self.noise_std = noise_std
        self.samples = samples
        self.window = window
        self.kinds = kinds
        self.seed = seed
        self.batch_size_prompts = batch_size_prompts
        self.fast = supports_fast_path(model) if fast is None else fast
        self.reuse_prefix = reuse_prefix  # saving 5 (fast path only); off: every run computes every position
        self.n_layers = model.cfg.n_layers

    # ---------------------------------------------------------------- prompt groups

    def groups(self) -> Iterator[Tensor]:
        """Prompt indices in groups whose restorations fit ``batch_size_prompts`` rows (at least one prompt)."""
        import torch

        per_prompt = self.samples * self.facts["tokens"].shape[1]
        size = max(1, self.batch_size_prompts // per_prompt)
        yield from torch.arange(len(self.facts["tokens"])).split(size)

    # ---------------------------------------------------------------- one group

    def trace(self, rows: Tensor) -> PromptTrace:
        import torch

        from interp_pipeline.tracing import prefix_cache

        model, device, samples = self.model, self.model.cfg.device, self.samples
        tokens = self.facts["tokens"][rows]
        width = int(self.facts["length"][rows].max())
        tokens = tokens[:, :width].to(device)
        last = self.facts["last"][rows].to(device)
        target = self.facts["object"][rows].to(device)
        n = len(rows)
        noise = self._noise(rows, width).to(device)

        names = {f"blocks.{layer}.{RESTORED_HOOK[kind]}" for kind in self.kinds for layer in range(self.n_layers)}
        with torch.inference_mode():
            clean_logits, clean_cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
            clean_last = clean_logits[torch.arange(n, device=device), last].float()
            clean_p = clean_last.softmax(-1).gather(1, target[:, None]).squeeze(1)
            clean_top1 = clean_last.argmax(-1) == target
            clean = {name: clean_cache[name] for name in names}
            del clean_cache, clean_logits

            corrupted_tokens = tokens.repeat_interleave(samples, 0)  # row g * samples + s
            add_noise = (f"{NOISE_HOOK}", self._noise_hook(noise, copies=1))
            starts = {f"blocks.{layer}.hook_resid_pre" for layer in range(self.n_layers)}
            starts.add(f"blocks.{self.n_layers - 1}.hook_resid_post")
            if not self.fast:  # the generic path runs every restoration from the tokens
                starts = set()
            recorder, run_kwargs = None, {}
            if self.fast and self.reuse_prefix and prefix_cache.supported(model):
                recorder = prefix_cache.CorruptedKeysValues(model, len(corrupted_tokens), width)
                run_kwargs = recorder.run_kwargs(corrupted_tokens)
            with model.hooks(fwd_hooks=[add_noise]):
                logits, cache = model.run_with_cache(corrupted_tokens, names_filter=lambda name: name in starts,
                                                     **run_kwargs)
            keys_values = recorder if recorder is not None and recorder.finish() else None
            resid = [cache[f"blocks.{layer}.hook_resid_pre"] for layer in range(self.n_layers)] if self.fast else []
            if self.fast:
                resid.append(cache[f"blocks.{self.n_layers - 1}.hook_resid_post"])
            del cache
            corrupted_p = self._probability(logits[torch.arange(n * samples, device=device),
                                                   last.repeat_interleave(samples)][:, None], target, n, 1)[0]
            scores = {kind: torch.full((n, self.n_layers, width), float("nan")) for kind in self.kinds}
            first = self.facts["subject_first"][rows]
            start = int(first.min())
            for kind in self.kinds:
                for layer in range(self.n_layers):
                    for positions in self._position_chunks(start, width, n):
                        p = self._restored(kind, layer, positions, tokens, resid, clean, noise, last, target,
                                           first.to(device), keys_values)
                        scores[kind][:, layer, positions[0]:positions[-1] + 1] = p.cpu()
            # Before a prompt's first noised token its clean and corrupted runs are the same computation
            # (causal attention): restoring there changes nothing, so the score is the corrupted one.
            before = torch.arange(width)[None, :] < first[:, None]
            beyond = torch.arange(width)[None, :] > self.facts["last"][rows][:, None]  # never read by the last token
            for kind in self.kinds:
                scores[kind] = scores[kind].where(~before[:, None, :], corrupted_p.cpu()[:, None, None])
                scores[kind].masked_fill_(beyond[:, None, :], float("nan"))
        return PromptTrace(rows, scores, clean_p.cpu(), corrupted_p.cpu(), clean_top1.cpu())

    def _noise(self, rows: Tensor, width: int) -> Tensor:
        """[G * samples, width, d_model]: zero outside each prompt's subject tokens."""
        import torch

        d_model = self.model.cfg.d_model
        out = torch.zeros(len(rows) * self.samples, width, d_model)
        for g, prompt in enumerate(rows.tolist()):
            first, last = int(self.facts["subject_first"][prompt]), int(self.facts["subject_last"][prompt])
            draws = noise_for(prompt, self.seed, self.samples, last - first + 1, d_model)
            out[g * self.samples:(g + 1) * self.samples, first:last + 1] = draws * self.noise_std
        return out

    def _noise_hook(self, noise: Tensor, copies: int) -> Any:
        def add(embed: Tensor, hook: Any) -> Tensor:
            return embed + noise.to(embed.dtype).repeat(copies, 1, 1)

        return add

    def _position_chunks(self, start: int, width: int, n: int) -> list[list[int]]:
        per_forward = max(1, self.batch_size_prompts // (n * self.samples))
        positions = list(range(start, width))
        return [positions[i:i + per_forward] for i in range(0, len(positions), per_forward)]

    def _probability(self, logits: Tensor, target: Tensor, n: int, copies: int) -> Tensor:
        """[copies, G]: the object's probability at the readout, averaged over the noise samples.
        ``logits``: [copies * G * samples, 1, d_vocab], copy-major then prompt then sample."""
        p = logits[:, 0].float().softmax(-1)
        p = p.gather(1, target.repeat_interleave(self.samples).repeat(copies)[:, None]).squeeze(1)
        return p.view(copies, n, self.samples).mean(-1)

    def _restored(self, kind: str, layer: int, positions: list[int], tokens: Tensor, resid: list[Tensor],
                  clean: dict[str, Tensor], noise: Tensor, last: Tensor, target: Tensor, first: Tensor,
                  keys_values: Any = None) -> Tensor:
        """[G, len(positions)]: the object's probability with ``kind`` restored at ``layer`` (its
        window for mlp/attn) and each of ``positions``, one batch of copies (copy-major). With
        ``keys_values`` (tracing/prefix_cache.py), one forward per position instead (see
        ``_restored_after_prefix``), and NaN where a prompt's subject (``first``) starts later."""
        import torch

        n, samples, copies = len(tokens), self.samples, len(positions)
        device = tokens.device
        base = n * samples
        row_position = torch.tensor(positions, device=device).repeat_interleave(base)  # copy c restores positions[c]
        row_prompt = torch.arange(n, device=device).repeat_interleave(samples).repeat(copies)
        readout = last.repeat_interleave(samples).repeat(copies)[:, None]
        layers = [layer] if kind == "hidden" else list(window_layers(layer, self.window, self.n_layers))
        hook_names = [f"blocks.{l}.{RESTORED_HOOK[kind]}" for l in layers]
        if self.fast and keys_values is not None:
            return self._restored_after_prefix(kind, layers, hook_names, positions, resid, clean, last, target,
                                               first, keys_values)

        def restorer(name: str) -> Any:
            # By the name we hooked, not hook.name: a bridge's hook reports its own name, not the alias.
            def restore(activation: Tensor, hook: Any) -> Tensor:
                activation[torch.arange(len(activation), device=device), row_position] = \
                    clean[name][row_prompt, row_position].to(activation.dtype)
                return activation

            return restore

        if self.fast:
            from interp_pipeline.patching.forward import PatchedForward

            forward = PatchedForward(self.model, tokens, None, fast=False)  # run_from only: no starts needed
            if kind == "hidden":
                # Edit the cached stream after block L and run from block L + 1: no hook.
                start = resid[layer + 1].repeat(copies, 1, 1)
                start[torch.arange(len(start), device=device), row_position] = \
                    clean[hook_names[0]][row_prompt, row_position].to(start.dtype)
                logits = forward.run_from(layer + 1, start, [], readout)
            else:
                start = resid[layers[0]].repeat(copies, 1, 1)
                logits = forward.run_from(layers[0], start, [(name, restorer(name)) for name in hook_names], readout)
        else:
            hooks = [(NOISE_HOOK, self._noise_hook(noise, copies)), *((name, restorer(name)) for name in hook_names)]
            full = self.model.run_with_hooks(tokens.repeat_interleave(samples, 0).repeat(copies, 1), fwd_hooks=hooks)
            logits = full.gather(1, readout[:, :, None].expand(-1, -1, full.shape[-1]))
        return self._probability(logits, target, n, copies).T

    def _restored_after_prefix(self, kind: str, layers: list[int], hook_names: list[str], positions: list[int],
                               resid: list[Tensor], clean: dict[str, Tensor], last: Tensor, target: Tensor,
                               first: Tensor, keys_values: Any) -> Tensor:
        """``_restored`` computing, for each position p, positions p.. only: the run attends to the
        corrupted run's keys and values for 0..p-1, and the restored position is its first (index 0).
        A forward per position (each has its own prefix; a shared one would recompute the positions
        between), all under one set of hooks, and one unembedding for all of them. A forward holds
        only the prompts that p can change: from their subject's first token to their last token
        (NaN for the others)."""
        import torch

        from interp_pipeline.patching.forward import PatchedForward

        samples = self.samples
        row_prompt = torch.arange(len(last), device=last.device).repeat_interleave(samples)
        row_first, row_last = first.repeat_interleave(samples), last.repeat_interleave(samples)
        forward = PatchedForward(self.model, resid[0], None, fast=False)  # blocks_from and logits only
        start_layer = layers[0] + (kind == "hidden")  # a hidden state is restored after its block
        current: dict[str, Any] = {}  # the position the running forward restores and its rows, read by the hooks

        def restorer(name: str) -> Any:
            def restore(activation: Tensor, hook: Any) -> Tensor:
                activation[:, 0] = clean[name][current["prompts"], current["position"]].to(activation.dtype)
                return activation

            return restore

        hooks = [] if kind == "hidden" else [(name, restorer(name)) for name in hook_names]
        finals, ran = [], []
        with self.model.hooks(fwd_hooks=hooks) if hooks else nullcontext():
            for column, position in enumerate(positions):
                run = ((row_first <= position) & (row_last >= position)).nonzero().squeeze(1)  # whole prompts
                if len(run) == 0:
                    continue
                current.update(position=position, prompts=row_prompt[run])
                start = resid[start_layer][run, position:]  # a copy (indexed by a tensor): edited below
                if kind == "hidden":  # the stream after block L, edited: no hook
                    start[:, 0] = clean[hook_names[0]][row_prompt[run], position].to(start.dtype)
                out = forward.blocks_from(start_layer, start, keys_values.prefix(position, run))
                finals.append(out[torch.arange(len(run), device=out.device), row_last[run] - position])
                ran.append((column, run))
        result = torch.full((len(last), len(positions)), float("nan"), device=last.device)
        if not finals:
            return result
        p = forward.logits(torch.cat(finals)[:, None])[:, 0].float().softmax(-1)
        rows = torch.cat([run for _, run in ran])
        p = p.gather(1, target[row_prompt[rows]][:, None]).view(-1, samples).mean(-1)  # a prompt's samples are adjacent
        columns = torch.cat([torch.full((len(run) // samples,), column, device=last.device) for column, run in ran])
        result[row_prompt[rows[::samples]], columns] = p
        return result
