"""Exact patching engine against transformer_lens.patching, in the same process.

GPT-2-small-shaped model with random weights (12 layers, 12 heads, d_model 768,
d_vocab 50257), 8 prompts of 16 tokens, normalized logit difference. For each grid:
TransformerLens's time, ours, the speed-up, the largest difference between the
two results, and our time over a lower bound: the block forwards the grid cannot
avoid (blocks L.. for a patch in layer L, on every prompt), timed at the batch
size the engine runs. Then attribution patching's time and its correlation with
the exact grid.

    python benchmarks/patching.py [--batch-size-prompts 96] [--grids head_out resid_pre]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")


def gpt2_shaped_model():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257, n_ctx=64,
        act_fn="gelu_new", normalization_type="LN", positional_embedding_type="standard", seed=0,
    )
    model = HookedTransformer(cfg)
    model.eval()
    return model


def prompt_pairs(n_prompts: int, n_pos: int):
    import torch

    generator = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 50257, (n_prompts, n_pos), generator=generator)
    corrupted = clean.clone()
    corrupted[:, [3, 9]] = torch.randint(0, 50257, (n_prompts, 2), generator=generator)  # two names swapped
    return {
        "clean": clean, "corrupted": corrupted,
        "answer": torch.randint(0, 50257, (n_prompts,), generator=generator),
        "wrong": torch.randint(0, 50257, (n_prompts,), generator=generator),
        "end": torch.full((n_prompts,), n_pos - 1),
        "targets": clean.roll(-1, 1), "loss_mask": torch.ones(n_prompts, n_pos, dtype=torch.bool),
    }


def block_lower_bound(model, setup, grid, repeats: int = 3) -> float:
    """Seconds of the block forwards no exact method can skip: for each patch in layer
    L, blocks L.. on every prompt; timed on batches the size the engine runs."""
    import torch

    batch = max(1, setup.batch_size_prompts // setup.n_prompts) * setup.n_prompts
    resid = torch.randn(batch, setup.n_pos, model.cfg.d_model)
    per_block = []
    with torch.inference_mode():
        for block in model.blocks[:2]:
            block(resid)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            for block in model.blocks:
                block(resid)
            per_block.append((time.perf_counter() - start) / len(model.blocks) / batch)
    per_sequence_block = min(per_block)
    sizes = grid.axis_sizes(model.cfg, setup.n_pos)
    patches_per_layer = 1
    for size in sizes[1:]:
        patches_per_layer *= size
    sequence_blocks = sum(patches_per_layer * setup.n_prompts * (model.cfg.n_layers - layer)
                          for layer in range(model.cfg.n_layers))
    return per_sequence_block * sequence_blocks


def main() -> None:
    import torch
    from transformer_lens import patching

    from interp_pipeline.patching.attribution import attribution_grid, prepare_attribution
    from interp_pipeline.patching.engine import hook_names_for, prepare, run_grid
    from interp_pipeline.patching.grids import parts

    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size-prompts", type=int, default=96)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--positions", type=int, default=16)
    parser.add_argument("--grids", nargs="+", default=["head_out", "resid_pre"])
    args = parser.parse_args()

    torch.manual_seed(0)
    print(f"torch threads: {torch.get_num_threads()}")
    model = gpt2_shaped_model()
    pairs = prompt_pairs(args.prompts, args.positions)
    setup = prepare(model, pairs, "logit_diff", normalize=True, batch_size_prompts=args.batch_size_prompts,
                    hook_names=hook_names_for(args.grids, model.cfg.n_layers))
    _, clean_cache = model.run_with_cache(pairs["clean"])
    attribution = prepare_attribution(model, pairs, setup.metric, args.grids,
                                      batch_size_prompts=args.batch_size_prompts)
    print(f"{'grid':<12} {'TL s':>7} {'ours s':>7} {'speed-up':>8} {'max |diff|':>10} {'bound s':>7} "
          f"{'ours/bound':>10} {'attr s':>7} {'corr':>6}")
    for name in args.grids:
        grid = parts(name)[0]
        tl_function = getattr(patching, grid.tl_function)
        start = time.perf_counter()
        with torch.inference_mode():
            theirs = tl_function(model, pairs["corrupted"], clean_cache, setup.metric.full_logits_metric)
        tl_seconds = time.perf_counter() - start
        start = time.perf_counter()
        ours = run_grid(name, setup)
        our_seconds = time.perf_counter() - start
        start = time.perf_counter()
        estimate = attribution_grid(name, attribution)
        attr_seconds = time.perf_counter() - start + attribution.seconds
        corr = torch.corrcoef(torch.stack([estimate.flatten(), ours.flatten()]))[0, 1].item()
        bound = block_lower_bound(model, setup, grid)
        print(f"{name:<12} {tl_seconds:7.2f} {our_seconds:7.2f} {tl_seconds / our_seconds:7.2f}x "
              f"{(ours - theirs).abs().max().item():10.2e} {bound:7.2f} {our_seconds / bound:9.2f}x "
              f"{attr_seconds:7.2f} {corr:6.3f}")


if __name__ == "__main__":
    main()
