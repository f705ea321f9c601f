"""Causal tracing: the batched engine against a plain TransformerLens hook loop, and its memory.

1. Speed, in one process: a random model (8 layers, d_model 256, 8,192-token vocabulary by
   default), prompts of 10 tokens with 1-3 subject tokens, 10 noise samples, all three kinds
   (hidden, MLP window, attention window). The plain loop is tests/support/tracing.py's
   reference: one ``run_with_hooks`` per (kind, layer, position), the samples in its batch, as
   the paper's ``trace_with_patch``. The engine runs twice: as it stands (restored runs compute
   positions from the restored one on, attending to the corrupted run's keys and values) and with
   ``reuse_prefix=False`` (every restored run computes every position), to show that saving alone.
   Each runs --repeats times, interleaved; the lowest CPU time is kept. On a machine with a CUDA
   device the speed part also runs there, after the CPU's, the card named (on it, read wall time). Reports the times, the ratios,
   the largest differences, the ratios arithmetic alone predicts, and the load average around the runs.
   ``--bridge llama`` (or ``neox``): the same shape as a TransformerBridge instead (a random
   LlamaForCausalLM, 4 query and 2 key/value heads, or a Pythia-style GPTNeoXForCausalLM, written
   with save_pretrained and loaded by interp_pipeline.models.hub.load_hugging_face): the engine's
   restored runs there follow the cached prefix through models/bridge_blocks.py, and the HF
   checkpoint is also loaded as a HookedTransformer, whose engine (prefix reused) is timed beside.
2. Memory: the causal_tracing stage (no figures) on 16, 64 and 256 prompts of a smaller random
   model (2 layers, d_model 64), each in a fresh subprocess; reports each one's peak resident
   memory (ru_maxrss).
   Streaming means the peak does not grow with the number of prompts.

    python benchmarks/causal_tracing.py [--prompts 4] [--layers 8] [--d-model 256] [--repeats 2] [--skip-memory] [--devices cpu cuda]
    HF_HUB_OFFLINE=1 python benchmarks/causal_tracing.py --bridge llama --skip-memory
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from devices import benchmark_devices, device_name, synchronize  # noqa: E402


def random_model(layers: int, d_model: int, d_vocab: int):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=layers, d_model=d_model, n_heads=d_model // 64, d_head=64,
                                  d_mlp=4 * d_model, d_vocab=d_vocab, n_ctx=32, act_fn="gelu_new",
                                  normalization_type="LN", seed=0)
    return HookedTransformer(cfg).eval()


def random_bridge(architecture: str, layers: int, d_model: int, d_vocab: int, directory: Path, device: str):
    """A random HF checkpoint of ``random_model``'s shape, as a TransformerBridge and as a HookedTransformer
    (TransformerLens's loader: folded and centred, as the Bridge's compatibility mode)."""
    import torch
    import transformer_lens.loading_from_pretrained as loading
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

    from interp_pipeline.models.hub import load_hugging_face, load_transformer_lens
    from tests.support.tiny_gpt2 import _tokenizer

    shape = dict(vocab_size=d_vocab, hidden_size=d_model, intermediate_size=4 * d_model, num_hidden_layers=layers,
                 num_attention_heads=d_model // 64, max_position_embeddings=32, bos_token_id=1, eos_token_id=1)
    torch.manual_seed(0)
    if architecture == "llama":
        hf_model = LlamaForCausalLM(LlamaConfig(**shape, num_key_value_heads=max(1, d_model // 128)))
    else:  # Pythia's layout: a quarter of each head rotated, parallel attention and MLP
        hf_model = GPTNeoXForCausalLM(GPTNeoXConfig(**shape, rotary_pct=0.25, use_parallel_residual=True))
    hf_model.save_pretrained(directory)
    _tokenizer().save_pretrained(directory)  # the word-level test tokenizer: the prompts are token ids
    bridge = load_hugging_face(str(directory), revision=None, device=device, dtype="float32")
    loading.get_official_model_name = lambda name: name  # a directory, not an official name
    hooked = load_transformer_lens(str(directory), revision=None, device=device, dtype="float32", fold_ln=True,
                                   center_writing_weights=True, center_unembed=True, fold_value_biases=True)
    return bridge.eval(), hooked.eval()


def random_facts(n_prompts: int, n_pos: int, d_vocab: int):
    import torch

    generator = torch.Generator().manual_seed(0)
    first = torch.randint(1, 4, (n_prompts,), generator=generator)
    span = torch.randint(0, 3, (n_prompts,), generator=generator)
    facts = {"tokens": torch.randint(0, d_vocab, (n_prompts, n_pos), generator=generator),
             "length": torch.full((n_prompts,), n_pos), "subject_first": first, "subject_last": first + span,
             "object": torch.randint(0, d_vocab, (n_prompts,), generator=generator)}
    facts["last"] = facts["length"] - 1
    for name in ("relation", "template", "split", "subject_id"):
        facts[name] = torch.zeros(n_prompts, dtype=torch.int64)
    return facts


def arithmetic(facts, layers: int, window: int, d_model: int, d_vocab: int) -> dict[str, float]:
    """The multiply-adds of each method in units of one block on one token (12 d_model^2: attention's four
    projections and the MLP's two; attention scores, norms and the clean run left out), per noise sample:
    what the speed-ups would be if every multiply-add cost the same."""
    from interp_pipeline.tracing.engine import window_layers

    unembed = d_vocab / (12 * d_model)  # one token's unembedding, in blocks
    # blocks each (kind, layer) runs from its first restored layer: hidden restores after block L
    blocks = [layers - layer - 1 for layer in range(layers)]
    blocks += 2 * [layers - window_layers(layer, window, layers)[0] for layer in range(layers)]
    work = {"loop": 0.0, "every position": 0.0, "prefix reused": 0.0}
    width = facts["tokens"].shape[1]
    start = int(facts["subject_first"].min())  # the engine without the reuse skips positions before a group's first
    for first in facts["subject_first"].tolist():
        corrupted = layers * width + width * unembed
        work["loop"] += corrupted + len(blocks) * width * (layers * width + width * unembed)
        work["every position"] += corrupted + (width - start) * (sum(blocks) * width + len(blocks) * unembed)
        work["prefix reused"] += corrupted + sum(sum(blocks) * (width - p) + len(blocks) * unembed
                                                 for p in range(first, width))
    return work


def speed(args, device: str) -> None:
    import torch

    sys.path.insert(0, str(ROOT))
    from interp_pipeline.tracing.engine import CausalTracer, default_window
    from tests.support.tracing import reference_trace

    torch.set_num_threads(1)
    print(f"device: {device_name(device)}")
    hooked = None
    if args.bridge:
        with tempfile.TemporaryDirectory() as directory:
            model, hooked = random_bridge(args.bridge, args.layers, args.d_model, args.vocab, Path(directory), device)
        print(f"TransformerBridge of a random {type(model.original_model).__name__} (HookedTransformer of it beside)")
    else:
        model = random_model(args.layers, args.d_model, args.vocab).to(device)
    facts = random_facts(args.prompts, 10, args.vocab)
    window = default_window(args.layers)
    settings = dict(noise_std=0.3, samples=10, window=window, seed=0)
    with torch.inference_mode():
        model(facts["tokens"][:1])  # warm-up
    load_before = Path("/proc/loadavg").read_text().split()[0]

    def timed(run):
        start, cpu = time.perf_counter(), time.process_time()
        out = run()
        synchronize(device)
        return out, time.perf_counter() - start, time.process_time() - cpu

    def engine(reuse_prefix: bool, model=model) -> dict:
        tracer = CausalTracer(model, facts, batch_size_prompts=args.batch_size_prompts, reuse_prefix=reuse_prefix,
                              **settings)
        scores = {}
        for rows in tracer.groups():
            trace = tracer.trace(rows)
            for g, prompt in enumerate(rows.tolist()):
                scores[prompt] = {kind: trace.scores[kind][g] for kind in trace.scores}
        return scores

    def loop() -> dict:
        return {prompt: reference_trace(model, facts, prompt, **settings)[0] for prompt in range(args.prompts)}

    # Each method --repeats times, interleaved, the lowest CPU time kept: the first run of a process
    # pays for imports and allocations, and the other jobs on a shared machine come and go.
    best: dict[str, tuple] = {}
    runs = [("reused", lambda: engine(True)), ("whole", lambda: engine(False)), ("loop", loop)]
    if hooked is not None:
        runs.append(("hooked", lambda: engine(True, hooked)))
    for _ in range(args.repeats):
        for name, run in runs:
            result = timed(run)
            if name not in best or result[2] < best[name][2]:
                best[name] = result
    (ours, engine_s, engine_cpu), (whole, whole_s, whole_cpu), (reference, loop_s, loop_cpu) = \
        best["reused"], best["whole"], best["loop"]
    worst = max(float((ours[p][k] - reference[p][k]).abs().max()) for p in reference for k in reference[p])
    worst_whole = max(float((whole[p][k] - reference[p][k]).abs().max()) for p in reference for k in reference[p])
    restorations = 3 * args.layers * 10 * args.prompts
    print(f"model: {args.layers} layers, d_model {args.d_model}, d_vocab {args.vocab}; {args.prompts} prompts x 10 "
          f"tokens, 10 noise samples, window {window}; {restorations} restorations (x 10 samples); "
          f"best CPU time of {args.repeats}")
    # CPU time as well as wall time: on a shared machine the wall clock also counts other jobs.
    print(f"plain hook loop:               {loop_s:8.2f} s wall, {loop_cpu:8.2f} s CPU")
    print(f"engine, every position:        {whole_s:8.2f} s wall, {whole_cpu:8.2f} s CPU  "
          f"(batch_size_prompts {args.batch_size_prompts}; reuse_prefix=False)")
    print(f"engine, prefix keys reused:    {engine_s:8.2f} s wall, {engine_cpu:8.2f} s CPU")
    print(f"speed-up over the loop:        {loop_s / engine_s:8.1f}x wall, {loop_cpu / engine_cpu:.1f}x CPU "
          f"(every position: {loop_s / whole_s:.1f}x wall, {loop_cpu / whole_cpu:.1f}x CPU)")
    print(f"max |difference| to the loop:  {worst:.2e} (every position: {worst_whole:.2e})")
    if hooked is not None:
        hooked_scores, hooked_s, hooked_cpu = best["hooked"]
        apart = max(float((hooked_scores[p][k] - ours[p][k]).abs().max()) for p in ours for k in ours[p])
        print(f"HookedTransformer engine:      {hooked_s:8.2f} s wall, {hooked_cpu:8.2f} s CPU  (prefix keys reused; "
              f"Bridge/HookedTransformer CPU {engine_cpu / hooked_cpu:.2f}x; max |difference| {apart:.2e})")
    work = arithmetic(facts, args.layers, window, args.d_model, args.vocab)
    print(f"arithmetic (block-tokens):     loop {work['loop']:.0f}, every position {work['every position']:.0f}, "
          f"prefix reused {work['prefix reused']:.0f}: {work['loop'] / work['prefix reused']:.1f}x "
          f"(every position {work['loop'] / work['every position']:.1f}x)")
    print(f"load average (1 min):          {load_before} before, {Path('/proc/loadavg').read_text().split()[0]} after")


def memory_child(n_prompts: int, layers: int, d_model: int, vocab: int) -> None:
    import resource

    import torch

    from interp_pipeline.stages.causal_tracing import causal_tracing

    torch.set_num_threads(1)
    model = random_model(layers, d_model, vocab)
    facts = random_facts(n_prompts, 10, vocab)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    causal_tracing(model, facts, samples=10, only_known=False, figures=0, batch_size_prompts=512)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"prompts": n_prompts, "peak_mib": peak / 1024, "before_mib": before / 1024,
                      "seconds": time.perf_counter() - start}))


def memory(args) -> None:
    print("peak resident memory of the causal_tracing stage (fresh process each; model and imports included):")
    for n in (16, 64, 256):
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(n), "--layers", str(args.mem_layers),
                              "--d-model", str(args.mem_d_model), "--vocab", str(args.vocab)],
                             capture_output=True, text=True, check=True, cwd=ROOT,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {n:4d} prompts: peak {result['peak_mib']:7.1f} MiB (before tracing {result['before_mib']:7.1f} MiB), "
              f"{result['seconds']:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--batch-size-prompts", type=int, default=512)
    parser.add_argument("--bridge", choices=("llama", "neox"), default=None,
                        help="speed on a TransformerBridge of a random HF model of this architecture")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--mem-layers", type=int, default=2)
    parser.add_argument("--mem-d-model", type=int, default=64)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--devices", nargs="+", default=None,
                        help="speed on these; default: cpu, and cuda when this machine has one (both in this run)")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        memory_child(args.memory_child, args.layers, args.d_model, args.vocab)
        return
    if not args.skip_speed:
        for device in benchmark_devices(args.devices):
            speed(args, device)
    if not args.skip_memory:
        memory(args)


if __name__ == "__main__":
    main()
