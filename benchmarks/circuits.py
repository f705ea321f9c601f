"""Edge attribution patching (EAP, EAP-IG) against a plain implementation, in the same process.

GPT-2-small-shaped model with random weights (12 layers, 12 heads, d_model 768, d_vocab 50257;
32,491 edges), 64 prompt pairs of 15 tokens, logit difference. For each method: our time
(interp_pipeline.circuits.scoring: the gradient-times-difference products taken in tensor hooks
during the backward pass, one [157, 445] score matrix) and the plain one's (the way the method is
usually first written: cache every sender's output with hook_result, take autograd's gradient at
every receiver input at once, then one einsum), the largest difference between the two, and the
peak resident memory each adds (sampled every 5 ms from /proc/self/statm; CPU only).

    OMP_NUM_THREADS=1 python benchmarks/circuits.py [--n-prompts 64] [--ig-steps 5] [--batch-size-prompts 64]
"""

from __future__ import annotations

import argparse
import os
import threading
import time

os.environ.setdefault("TQDM_DISABLE", "1")

from benchmarks.patching import gpt2_shaped_model, prompt_pairs  # noqa: E402


class PeakRSS:
    """Peak resident memory above the level at entry, sampled in a thread."""

    def __enter__(self) -> PeakRSS:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.start = self._rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.005)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def gib(self) -> float:
        return (self.peak - self.start) / 2**30


def plain_scores(model, pairs, metric, steps: int | None):
    """EAP (steps None) or EAP-IG on inputs, written directly: every sender's output from hook_result,
    every receiver input's gradient from one autograd.grad call, one einsum."""
    import torch

    from interp_pipeline.circuits.graph import Graph

    graph = Graph.of(model.cfg)
    n_layers = model.cfg.n_layers
    receiver_names = [n for layer in range(n_layers) for n in
                      (*(f"blocks.{layer}.hook_{x}_input" for x in "qkv"), f"blocks.{layer}.hook_mlp_in")]
    receiver_names.append(f"blocks.{n_layers - 1}.hook_resid_post")
    model.set_use_attn_result(True)
    model.set_use_split_qkv_input(True)
    model.set_use_hook_mlp_in(True)
    try:
        outputs = {}
        with torch.no_grad():
            for kind in ("clean", "corrupted"):
                _, cache = model.run_with_cache(pairs[kind])
                parts = [cache["blocks.0.hook_resid_pre"].unsqueeze(2)]
                for layer in range(n_layers):
                    parts += [cache[f"blocks.{layer}.attn.hook_result"], cache[f"blocks.{layer}.hook_mlp_out"].unsqueeze(2)]
                outputs[kind] = torch.cat(parts, 2)
                del cache
        difference = outputs["corrupted"] - outputs["clean"]
        total = None
        points = [None] if steps is None else [k / steps for k in range(steps)]
        for alpha in points:
            kept = {}

            def keep(activation, hook):
                kept[hook.name] = activation
                return activation

            def start(activation, hook, alpha=alpha):
                value = activation if alpha is None else outputs["corrupted"][:, :, 0] - alpha * difference[:, :, 0]
                return value.detach().requires_grad_(True)

            logits = model.run_with_hooks(pairs["clean"], fwd_hooks=[("blocks.0.hook_resid_pre", start),
                                                                      *((n, keep) for n in receiver_names)])
            grads = torch.autograd.grad(metric.full_logits_metric(logits), [kept[n] for n in receiver_names])
            columns = []
            for index, grad in enumerate(grads):
                columns.append(grad if grad.ndim == 4 else grad.unsqueeze(2))
            stacked = torch.cat(columns, 2)  # [batch, pos, n_receivers, d_model]
            total = stacked if total is None else total + stacked
            del grads, columns, logits, kept
        return torch.einsum("bpsd,bprd->sr", difference, total / len(points)) * graph.valid
    finally:
        model.set_use_attn_result(False)
        model.set_use_split_qkv_input(False)
        model.set_use_hook_mlp_in(False)


def main() -> None:
    import torch

    from interp_pipeline.circuits.graph import Graph
    from interp_pipeline.circuits.scoring import gradient_scores
    from interp_pipeline.patching.metrics import Metric

    parser = argparse.ArgumentParser()
    parser.add_argument("--n-prompts", type=int, default=64)
    parser.add_argument("--n-pos", type=int, default=15)
    parser.add_argument("--ig-steps", type=int, default=5)
    parser.add_argument("--batch-size-prompts", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = gpt2_shaped_model()
    # Nobody needs the weights' gradients; plain code usually leaves them on, we turn them off for both.
    model.requires_grad_(False)
    pairs = prompt_pairs(args.n_prompts, args.n_pos)
    pairs["end"] = torch.full((args.n_prompts,), args.n_pos - 1)
    metric = Metric("logit_diff", pairs)
    graph = Graph.of(model.cfg)
    print(f"GPT-2-shaped random model: {graph.n_edges} edges ({graph.n_senders} x {graph.n_receivers}); "
          f"{args.n_prompts} pairs of {args.n_pos} tokens; torch threads {torch.get_num_threads()}")
    for method, steps in (("eap", None), ("eap_ig_inputs", args.ig_steps)):
        with PeakRSS() as ours_mem:
            start = time.perf_counter()
            ours = gradient_scores(model, graph, pairs, metric, method, ig_steps=args.ig_steps,
                                   batch_size_prompts=args.batch_size_prompts)
            ours_s = time.perf_counter() - start
        with PeakRSS() as plain_mem:
            start = time.perf_counter()
            plain = plain_scores(model, pairs, metric, steps)
            plain_s = time.perf_counter() - start
        diff = float((ours - plain).abs().max())
        scale = float(plain.abs().max())
        print(f"{method:14s} ours {ours_s:7.1f} s  peak +{ours_mem.gib:5.2f} GiB | plain {plain_s:7.1f} s  "
              f"peak +{plain_mem.gib:5.2f} GiB | speed-up {plain_s / ours_s:4.2f}x | max |diff| {diff:.2e} "
              f"(largest score {scale:.2e})")


if __name__ == "__main__":
    main()
