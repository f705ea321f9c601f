"""The IOI demo's sweeps on a TransformerBridge: its fast path against its generic path and HookedTransformer.

A GPT-2-small-shaped GPT2LMHeadModel with random weights (12 layers, 12 heads, d_model 768,
d_vocab 50257) is saved with save_pretrained (GPT-2's tokenizer beside it, from the rehearsal's
offline copy) and loaded twice in this process: as a TransformerBridge by
interp_pipeline.models.hub.load_hugging_face (compatibility mode, HF_HUB_OFFLINE=1), and as a
HookedTransformer by TransformerLens's own loading path (folded and centred the same way). Same
prompts as benchmarks/patching.py (8 prompts of 16 tokens, two names swapped), normalized logit
difference. For each grid: the sweep's seconds (run_grid; the clean and corrupted runs, made
once by ``prepare``, are timed apart) on HookedTransformer, on the Bridge's fast path
(models/bridge_blocks.py) and on its generic path (a full run_with_hooks per pass), the
ratios, and the largest difference of the Bridge's two results from HookedTransformer's.

``--arch llama``: a Llama-shaped LlamaForCausalLM instead (rotary, RMSNorm, gated MLP; GPT-2 small's
width: d_model 768, 12 query and 4 key/value heads, d_mlp 2048, d_vocab 50257; 6 layers), the same
three paths.

On a machine with a CUDA device the same sweeps also run there, after the CPU's, the card named
(``--devices`` chooses).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/bridge_patching.py [--arch gpt2|llama] [--grids head_out resid_pre] [--repeats 2] [--devices cpu cuda]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from devices import benchmark_devices, device_name, synchronize  # noqa: E402
from patching import prompt_pairs  # noqa: E402  (benchmarks/patching.py: the same prompts)


def save_shaped(architecture: str, directory: Path) -> Path:
    """Random GPT-2-small-shaped weights (``architecture`` gpt2) or a 6-layer Llama of the same width
    (llama), and GPT-2's tokenizer, written with save_pretrained."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from interp_pipeline.rehearsal.gpt2_tokenizer import END_OF_TEXT, N_POSITIONS, gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    eot = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    torch.manual_seed(0)
    if architecture == "gpt2":
        # n_ctx: TransformerLens's GPT-2 config conversion reads it (transformers 5 dropped it).
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=N_POSITIONS, n_ctx=N_POSITIONS,
                                           n_embd=768, n_layer=12, n_head=12, bos_token_id=eot, eos_token_id=eot))
    else:
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=2048,
                                             num_hidden_layers=6, num_attention_heads=12, num_key_value_heads=4,
                                             max_position_embeddings=N_POSITIONS, bos_token_id=eot, eos_token_id=eot))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def hooked_transformer(directory: Path, device: str):
    """The same weights as a HookedTransformer, by the project's loader (HookedTransformer.from_pretrained:
    LayerNorm folded, writing weights and unembedding centred, value biases folded, as compatibility mode
    does); TransformerLens's check of official model names is bypassed for the directory."""
    import transformer_lens.loading_from_pretrained as loading

    from interp_pipeline.models.hub import load_transformer_lens

    loading.get_official_model_name = lambda name: name
    return load_transformer_lens(str(directory), revision=None, device=device, dtype="float32", fold_ln=True,
                                 center_writing_weights=True, center_unembed=True, fold_value_biases=True)


def sweeps_on(device: str, directory: Path, args: argparse.Namespace) -> None:
    """The table for one device: each grid on HookedTransformer, the Bridge's fast path and its generic path."""
    from interp_pipeline.models.hub import load_hugging_face
    from interp_pipeline.patching.engine import hook_names_for, prepare, run_grid

    print(f"device: {device_name(device)}", flush=True)
    models = {
        "hooked": hooked_transformer(directory, device),
        "bridge": load_hugging_face(str(directory), revision=None, device=device, dtype="float32"),
    }
    pairs = prompt_pairs(args.prompts, args.positions)
    hooks = hook_names_for(args.grids, models["bridge"].cfg.n_layers)
    setups, prepare_seconds = {}, {}
    for label, model, fast in (("hooked", models["hooked"], True), ("bridge fast", models["bridge"], True),
                               ("bridge generic", models["bridge"], False)):
        start = time.perf_counter()
        setups[label] = prepare(model, pairs, "logit_diff", normalize=True, batch_size_prompts=args.batch_size_prompts,
                                hook_names=hooks, fast=fast)
        synchronize(device)
        prepare_seconds[label] = time.perf_counter() - start
    print("prepare (clean + corrupted runs) s: " + ", ".join(f"{k} {v:.2f}" for k, v in prepare_seconds.items()))
    print(f"{'grid':<10} {'HT s':>7} {'fast s':>7} {'generic s':>9} {'fast/HT':>8} {'generic/fast':>12} "
          f"{'|fast-HT|':>9} {'|gen-HT|':>9} {'max|HT|':>8}  load", flush=True)
    for name in args.grids:
        seconds, results = {label: float("inf") for label in setups}, {}
        for _ in range(args.repeats):
            for label, setup in setups.items():
                start = time.perf_counter()
                results[label] = run_grid(name, setup)
                synchronize(device)
                seconds[label] = min(seconds[label], time.perf_counter() - start)
        fast_diff = (results["bridge fast"] - results["hooked"]).abs().max().item()
        generic_diff = (results["bridge generic"] - results["hooked"]).abs().max().item()
        print(f"{name:<10} {seconds['hooked']:7.2f} {seconds['bridge fast']:7.2f} {seconds['bridge generic']:9.2f} "
              f"{seconds['bridge fast'] / seconds['hooked']:7.2f}x "
              f"{seconds['bridge generic'] / seconds['bridge fast']:11.2f}x {fast_diff:9.1e} {generic_diff:9.1e} "
              f"{results['hooked'].abs().max().item():8.2f}  "
              f"{os.getloadavg()[0]:.2f}", flush=True)


def main() -> None:
    import torch

    from interp_pipeline.patching.config import PatchingConfig

    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size-prompts", type=int, default=PatchingConfig().batch_size_prompts)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--positions", type=int, default=16)
    parser.add_argument("--arch", choices=["gpt2", "llama"], default="gpt2")
    parser.add_argument("--grids", nargs="+", default=["head_out", "resid_pre"])
    parser.add_argument("--repeats", type=int, default=1, help="interleaved sweeps per path; the fastest is kept "
                                                               "(on a shared machine, load shifts between paths)")
    parser.add_argument("--devices", nargs="+", default=None,
                        help="default: cpu, and cuda when this machine has one (both in this run)")
    args = parser.parse_args()

    print(f"{args.arch}: torch threads: {torch.get_num_threads()}, load average at start: {os.getloadavg()[0]:.2f}, "
          f"batch_size_prompts {args.batch_size_prompts}, repeats {args.repeats}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        # Not "llama_shaped": TransformerLens's config conversion takes any name containing "llama" for an
        # official Llama and reads no config.json.
        directory = save_shaped(args.arch, Path(tmp) / f"{args.arch.replace('llama', 'rms_rotary')}_shaped")
        for device in benchmark_devices(args.devices):
            sweeps_on(device, directory, args)


if __name__ == "__main__":
    main()
