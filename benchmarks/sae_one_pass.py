"""Four SAEs from one pass over the data against four separate runs of the same SAEs.

Every run is the train_sae stage, same batch size, steps and seed: the one pass with
``variants`` (an l1 sweep), the separate runs one per l1. Two data sources:

- the Zarr store (cache_activations's): the one pass reads each batch once for all
  four SAEs, separate runs read it four times;
- streamed from the model (no cache): the one pass runs the model's forward once per
  batch for all four, separate runs four times.

The SAEs' own compute is the same either way. Separate runs are timed before and
after the one pass and averaged, so drift on a shared machine shows.

    python benchmarks/sae_one_pass.py [--d-model 512] [--layers 4] [--steps 15] [--batch 4096] [--expansion 8]
                                      [--sources store,model]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

L1_SWEEP = (1.0, 3.0, 5.0, 10.0)


def make_model(d_model: int, layers: int):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=layers, d_model=d_model, n_heads=8, d_head=d_model // 8,
                                  d_mlp=4 * d_model, d_vocab=1000, n_ctx=128, act_fn="gelu",
                                  normalization_type="LN", seed=0)
    model = HookedTransformer(cfg)
    model.eval()
    return model


def compare(label: str, source: dict, common: dict) -> None:
    from interp_pipeline.stages.sae import train_sae

    def separate() -> float:
        start = time.perf_counter()
        for l1 in L1_SWEEP:
            train_sae(**source, **common, l1_coefficient=l1)
        return time.perf_counter() - start

    before = separate()
    start = time.perf_counter()
    train_sae(**source, **common, variants=[{"l1_coefficient": l1} for l1 in L1_SWEEP])
    one_pass = time.perf_counter() - start
    after = separate()
    baseline = (before + after) / 2
    print(f"{label}:")
    print(f"  {len(L1_SWEEP)} separate runs:    {before:7.1f} s, again {after:7.1f} s")
    print(f"  {len(L1_SWEEP)} SAEs in one pass: {one_pass:7.1f} s")
    print(f"  one pass / separate runs: {one_pass / baseline:.3f} (speed-up {baseline / one_pass:.2f}x)")


def main() -> None:
    import torch

    from interp_pipeline.stages.cache_activations import cache_activations
    from interp_pipeline.tracking.base import NullRun, RecordingTracker

    parser = argparse.ArgumentParser()
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--expansion", type=int, default=8)
    parser.add_argument("--sources", default="store,model", help="store, model or both (comma-separated)")
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")

    hook = f"blocks.{args.layers - 1}.hook_resid_post"
    n_rows = args.batch * (args.steps + 2) + args.batch
    n_rows += -n_rows % 128
    model = make_model(args.d_model, args.layers)
    tokens = torch.randint(0, 1000, (n_rows // 128, 128), generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        store = cache_activations(model, tokens, hooks=[hook], store=str(Path(scratch) / "acts.zarr"),
                                  batch_size_prompts=32, chunk_rows=8192)
        print(f"store: {n_rows} rows of {hook} (d_model {args.d_model}, {args.layers} layers), "
              f"written in {time.perf_counter() - start:.1f} s")
        common = dict(hook=hook, architecture="standard", expansion_factor=args.expansion,
                      train_batch_size_tokens=args.batch, training_tokens=args.batch * args.steps,
                      eval_tokens=args.batch, log_every=10, seed=0, device="cpu",
                      tracker=RecordingTracker(NullRun(), Path(scratch) / "artifacts"))
        if "store" in args.sources:
            compare("fed from the Zarr store", {"store": store}, common)
        if "model" in args.sources:
            compare("streamed from the model", {"model": model, "tokens": tokens}, common)


if __name__ == "__main__":
    main()
