"""Activation caching: our stage against a bare forward, a naive torch.save loop and SAELens, in one run.

A GPT-2-small-shaped HookedTransformer with random weights (built from a config, so
nothing is downloaded), in eval mode under torch.inference_mode, caches two residual
stream hooks (blocks.6 and blocks.8 hook_resid_pre) over N batches of 8 x 128 seeded
random tokens. Measured, each over the same batches:

1. bare forward with stop_at_layer=9 (what the stage itself runs for these hooks: deepest
   hook layer + 1), timed before and after each stage run (baseline: the best of those
   timings); the full 12-layer forward for reference;
2. the cache_activations stage (zstd level 3, chunks of 4,096 rows) into a fresh Zarr store,
   ``--repeats`` times (each into its own store, between two bare timings); overhead = best
   stage time / best bare truncated forward - 1 (goal: at most 10%). The machine is shared:
   other processes' load slows single timings by up to several times, so the best of a few
   repeats is the figure, and each repeat's own ratio is printed beside it. The process's CPU
   seconds (every thread) are printed too: with one torch thread they are the work done,
   which the load barely changes (with several, torch's threads spin while they wait);
3. a naive loop: model.run_with_cache(batch, names_filter=hooks) (full forward), then
   torch.save({hook: tensor}) per batch;
4. SAELens's CacheActivationsRunner, one run per hook (it caches one hook per run), on an
   in-memory datasets.Dataset of the same token ids; its model loader only loads
   pretrained weights by name, so it is handed the same in-memory model instead;
5. reading the store back: ActivationStore.iter_batches(hook, 4096, seed=0, as_torch=True),
   one shuffled epoch per hook.

Goal (activation-cache issue): stage overhead at most 10% over the bare truncated forward.
The default of 6 batches keeps a run near 3 minutes on the 2-core machine (each batch goes
through the model about 7 times, a full 8 x 128 forward takes several seconds on 2 cores);
more batches spread the stage's fixed set-up (model checksum, probe forward, store
creation: about 2 s) over more tokens, and give the reader more than one 4,096-row chunk.

On a machine with a CUDA device everything runs there too, after the CPU, the card named.

Usage: python benchmarks/activation_cache.py [--batches N] [--repeats R] [--devices cpu cuda] [--tmp DIR] [--no-saelens]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from devices import benchmark_devices, device_name  # noqa: E402

GOAL_OVERHEAD = 0.10
HOOKS = ["blocks.6.hook_resid_pre", "blocks.8.hook_resid_pre"]
BATCH, SEQ, D_MODEL = 8, 128, 768
STOP_AT_LAYER = 9  # deepest hook layer + 1, as the stage computes it
READ_BATCH = 4096


def build_model(device: str | None) -> Any:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=12, d_model=D_MODEL, n_heads=12, d_head=64, d_mlp=3072, n_ctx=1024,
                                  d_vocab=50257, act_fn="gelu_new", normalization_type="LN", seed=0,
                                  **({"device": device} if device else {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TransformerLens 3's TransformerBridge notice
        return HookedTransformer(cfg).eval()


def timed(fn: Callable[[], Any], device: Any) -> float:
    return timed_cpu(fn, device)[0]


def timed_cpu(fn: Callable[[], Any], device: Any) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds (all its threads) of ``fn()``."""
    import torch

    sync = torch.cuda.synchronize if getattr(device, "type", str(device)).startswith("cuda") else (lambda: None)
    sync()
    started, cpu = time.perf_counter(), time.process_time()
    fn()
    sync()
    return time.perf_counter() - started, time.process_time() - cpu


def load_average() -> str:
    return open("/proc/loadavg").read().split(" ", 1)[0] if os.path.exists("/proc/loadavg") else "?"


def disk_bytes(path: str | Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    return total


class MetricsTracker:
    """Keeps the metrics the stage logs (its write-loop tokens/s among them)."""

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.update(metrics)

    def set_tags(self, tags: dict[str, Any]) -> None:
        pass

    def log_figure(self, *args: Any) -> None:
        pass

    def log_dict(self, *args: Any) -> None:
        pass

    def log_text(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def sae_lens_model(model: Any) -> Iterator[None]:
    """Hand CacheActivationsRunner our model: its loader only takes a pretrained model's name."""
    import sae_lens.cache_activations_runner as runner_module

    original = runner_module.load_model
    runner_module.load_model = lambda **kwargs: model
    try:
        yield
    finally:
        runner_module.load_model = original


def run_sae_lens(model: Any, tokens: Any, out: Path) -> tuple[float | None, int, str]:
    """Seconds and bytes written for one CacheActivationsRunner run per hook, or None and why not."""
    try:
        from datasets import Dataset
        from sae_lens import CacheActivationsRunner, CacheActivationsRunnerConfig
    except Exception as error:  # noqa: BLE001 - reported, not raised
        return None, 0, f"sae_lens import failed: {type(error).__name__}: {error}"
    n_tokens = tokens.numel()
    bytes_per_token = D_MODEL * 4
    # One buffer (one shard) holding every token: the default 2 GB buffer would cycle our
    # small dataset ~50 times per buffer. +1 byte keeps float rounding from losing a batch.
    buffer_gb = (n_tokens * bytes_per_token + 1) / 1e9
    dataset = Dataset.from_dict({"input_ids": tokens.cpu().numpy()})  # input, like our tokens tensor
    seconds, written = 0.0, 0
    for hook in HOOKS:
        path = out / f"sae_lens_{hook}"
        try:
            with warnings.catch_warnings(), sae_lens_model(model):
                # It warns that the dataset has fewer *samples* than training *tokens*.
                warnings.simplefilter("ignore")

                def run() -> None:
                    cfg = CacheActivationsRunnerConfig(
                        dataset_path="in-memory", model_name="random-gpt2-small", model_batch_size=BATCH,
                        hook_name=hook, d_in=D_MODEL, training_tokens=n_tokens, context_size=SEQ,
                        new_cached_activations_path=str(path), shuffle=False, dtype="float32",
                        device=str(model.cfg.device), buffer_size_gb=buffer_gb,
                    )
                    CacheActivationsRunner(cfg, override_dataset=dataset).run()

                seconds += timed(run, model.cfg.device)
        except Exception as error:  # noqa: BLE001 - reported, not raised
            return None, 0, f"CacheActivationsRunner failed on {hook}: {type(error).__name__}: {error}"
        written += disk_bytes(path)
    return seconds, written, "one run per hook (it caches one hook per run); model loader patched to our in-memory model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=6, help="batches of 8 x 128 tokens (default 6)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="stage runs, each between two bare timings; the best of each counts (default 1)")
    parser.add_argument("--devices", nargs="+", default=None,
                        help="model devices, one after the other (default: cpu, and cuda when this machine has one)")
    parser.add_argument("--tmp", default=None, help="directory for the stores (default: the system temp dir)")
    parser.add_argument("--no-saelens", action="store_true", help="skip SAELens's CacheActivationsRunner")
    parser.add_argument("--compression", default="zstd", help="the stage's compression: zstd, blosc or none")
    parser.add_argument("--level", type=int, default=3, help="the stage's compression level")
    args = parser.parse_args()
    for device in benchmark_devices(args.devices):
        measure(args, device)


def measure(args: argparse.Namespace, device_wanted: str) -> None:
    """Every timing above on one device, and its table."""
    import torch

    from interp_pipeline.activations.reader import ActivationStore
    from interp_pipeline.stages.cache_activations import cache_activations

    model = build_model(device_wanted)
    device = model.cfg.device
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.cfg.d_vocab, (args.batches * BATCH, SEQ), generator=generator)
    batches = [b.to(device) for b in tokens.split(BATCH)]
    n_tokens = tokens.numel()
    rows: list[tuple[str, float, int | None]] = []  # name, seconds, bytes on disk

    with torch.inference_mode(), tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        out = Path(tmp)
        model(batches[0], stop_at_layer=STOP_AT_LAYER)  # warm-up
        model(batches[0])

        def bare(stop: int | None) -> Callable[[], None]:
            def run() -> None:
                for batch in batches:
                    model(batch, stop_at_layer=stop)
            return run

        loads = [load_average()]
        full = timed(bare(None), device)
        bares = [timed_cpu(bare(STOP_AT_LAYER), device)]
        stages: list[tuple[float, float]] = []
        trackers: list[MetricsTracker] = []

        def stage_into(url: str, tracker: MetricsTracker) -> Callable[[], None]:
            def run() -> None:
                cache_activations(model, tokens, hooks=HOOKS, batch_size_prompts=BATCH, chunk_rows=4096, store=url,
                                  tracker=tracker, compression=args.compression, compression_level=args.level)
            return run

        for repeat in range(args.repeats):
            store_url = str(out / f"s{repeat}.zarr")  # a fresh store each time; the last is read back below
            trackers.append(MetricsTracker())
            stages.append(timed_cpu(stage_into(store_url, trackers[-1]), device))
            bares.append(timed_cpu(bare(STOP_AT_LAYER), device))
            loads.append(load_average())
        bare_truncated, bare_cpu = min(b[0] for b in bares), min(b[1] for b in bares)
        best = min(range(len(stages)), key=lambda i: stages[i][0])
        stage, stage_cpu, tracker = stages[best][0], min(s[1] for s in stages), trackers[best]

        naive_dir = out / "naive"
        naive_dir.mkdir()

        def naive() -> None:
            for i, batch in enumerate(batches):
                _, cache = model.run_with_cache(batch, names_filter=HOOKS)
                torch.save({hook: cache[hook] for hook in HOOKS}, naive_dir / f"batch_{i:05d}.pt")

        naive_s = timed(naive, device)

        if args.no_saelens:
            sae_s, sae_bytes, sae_note = None, 0, "skipped (--no-saelens)"
        else:
            sae_s, sae_bytes, sae_note = run_sae_lens(model, tokens, out)

        store = ActivationStore.open(store_url)
        reads = []
        for hook in HOOKS:
            nbytes = n_rows = 0
            started = time.perf_counter()
            for batch in store.iter_batches(hook, READ_BATCH, seed=0, as_torch=True):
                nbytes += batch.numel() * batch.element_size()
                n_rows += batch.shape[0]
            reads.append((hook, time.perf_counter() - started, nbytes, n_rows))
        on_disk, ratio = store.nbytes_on_disk(), store.compression_ratio()

        rows.append((f"bare forward, stop_at_layer={STOP_AT_LAYER} (baseline)", bare_truncated, None))
        rows.append(("bare forward, full 12 layers", full, None))
        rows.append(("cache_activations stage", stage, on_disk))
        rows.append(("naive run_with_cache + torch.save", naive_s, disk_bytes(naive_dir)))
        if sae_s is not None:
            rows.append(("SAELens CacheActivationsRunner (x2 hooks)", sae_s, sae_bytes))

    print(f"model: random GPT-2-small shape on {device_name(str(device))}; "
          f"{args.batches} batches x {BATCH} x {SEQ} = {n_tokens} tokens; hooks {', '.join(HOOKS)}")
    print(f"load average (1 min) at the start and after each repeat: {', '.join(loads)}")
    print("bare truncated forward, each timing: " + ", ".join(f"{b[0]:.2f} s" for b in bares) + " (baseline: best)")
    print("stage, each repeat: " + ", ".join(
        f"{s[0]:.2f} s ({s[0] / ((bares[i][0] + bares[i + 1][0]) / 2) - 1:+.1%} over its neighbours' mean)"
        for i, s in enumerate(stages)) + " (best counts)")
    print()
    print(f"{'':44} {'seconds':>8} {'tokens/s':>9} {'x baseline':>10} {'disk MB':>8}")
    for name, seconds, nbytes in rows:
        disk = f"{nbytes / 1e6:8.1f}" if nbytes is not None else f"{'':8}"
        print(f"{name:44} {seconds:8.2f} {n_tokens / seconds:9.0f} {seconds / bare_truncated:10.3f} {disk}")
    if sae_s is None:
        print(f"SAELens CacheActivationsRunner: not run: {sae_note}")
    else:
        print(f"SAELens: {sae_note}")
    overhead = stage / bare_truncated - 1
    loop_tps = tracker.metrics.get("tokens_per_s", 0.0)
    print()
    print(f"stage overhead over bare truncated forward: {overhead:+.1%} "
          f"(goal <= {GOAL_OVERHEAD:.0%}: {'met' if overhead <= GOAL_OVERHEAD else 'NOT met'})")
    print(f"CPU seconds (best): bare {bare_cpu:.2f}, stage {stage_cpu:.2f}: {stage_cpu / bare_cpu - 1:+.1%}")
    print(f"stage write loop alone (its tokens_per_s metric, best repeat): {loop_tps:.0f} tokens/s, "
          f"{(n_tokens / loop_tps if loop_tps else float('nan')):.2f} s; setup and close: "
          f"{stage - (n_tokens / loop_tps if loop_tps else 0):.2f} s")
    print(f"store: {on_disk / 1e6:.1f} MB on disk, compression ratio {ratio:.3f}")
    for hook, seconds, nbytes, n_rows in reads:
        print(f"read {hook}: {n_rows} rows in {seconds:.2f} s = {nbytes / 1e6 / seconds:.0f} MB/s, "
              f"{n_rows / seconds:.0f} rows/s (batches of {READ_BATCH}, shuffled, float32)")


if __name__ == "__main__":
    main()
