"""SAE training throughput fed from the Zarr store against SAELens's SAETrainer fed from memory.

Both runs are the train_sae stage (SAELens's SAETrainer underneath), same SAE, batch
size, seed and steps; one reads shuffled batches from the activation store the
cache_activations stage wrote, the other the same rows already in a tensor. The
ratio is the store's cost. Goal: at least 0.9.

    python benchmarks/sae_throughput.py [--d-model 512] [--steps 30] [--batch 4096]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")


def write_store(directory: Path, d_model: int, n_rows: int) -> dict:
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from interp_pipeline.stages.cache_activations import cache_activations

    cfg = HookedTransformerConfig(n_layers=1, d_model=d_model, n_heads=8, d_head=d_model // 8, d_mlp=4 * d_model,
                                  d_vocab=1000, n_ctx=128, act_fn="gelu", normalization_type="LN", seed=0)
    model = HookedTransformer(cfg)
    model.eval()
    tokens = torch.randint(0, 1000, (n_rows // 128, 128), generator=torch.Generator().manual_seed(0))
    return cache_activations(model, tokens, hooks=["blocks.0.hook_resid_post"], store=str(directory / "acts.zarr"),
                             batch_size_prompts=32, chunk_rows=8192)


def main() -> None:
    import torch

    from interp_pipeline.activations.reader import ActivationStore
    from interp_pipeline.stages.sae import train_sae
    from interp_pipeline.tracking.base import NullRun, RecordingTracker

    parser = argparse.ArgumentParser()
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--expansion", type=int, default=8)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")

    eval_tokens = args.batch
    n_rows = args.batch * (args.steps + 2) + eval_tokens
    n_rows += -n_rows % 128
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        store = write_store(Path(scratch), args.d_model, n_rows)
        print(f"store: {n_rows} rows of d_model {args.d_model}, written in {time.perf_counter() - start:.1f} s")
        in_memory = ActivationStore.open(store["store_uri"]).read("blocks.0.hook_resid_post", slice(0, None)).float()
        common = dict(hook="blocks.0.hook_resid_post", architecture="standard", expansion_factor=args.expansion,
                      train_batch_size_tokens=args.batch, training_tokens=args.batch * args.steps,
                      eval_tokens=eval_tokens, log_every=10, seed=0, device="cpu")
        results = {}
        for name, source in (("in-memory tensor", {"activations": in_memory}), ("Zarr store", {"store": store}),
                             ("in-memory tensor (again)", {"activations": in_memory})):
            tracker = RecordingTracker(NullRun(), Path(scratch) / name.replace(" ", "_"))
            start = time.perf_counter()
            train_sae(**source, **common, tracker=tracker)
            results[name] = tracker.last["tokens_per_s"]
            print(f"{name:<26} {results[name]:10.0f} tokens/s  (stage {time.perf_counter() - start:.1f} s)")
        baseline = (results["in-memory tensor"] + results["in-memory tensor (again)"]) / 2
        print(f"Zarr store / in-memory: {results['Zarr store'] / baseline:.3f} (goal >= 0.9)")


if __name__ == "__main__":
    main()
