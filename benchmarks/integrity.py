"""What integrity costs: verified cached reruns against unverified ones, checksummed reads against plain ones.

(a) Cached rerun. The experiment runs once through the real CLI into a fresh outputs
    directory (computing everything), then is rerun from the cache several times,
    alternating runs that verify every entry (the default) with runs that skip it
    (INTERP_PIPELINE_SKIP_CACHE_VERIFY=1, a switch for this baseline only). Also timed
    in this process: the runner's look-ups alone (StageCache.lookup of every entry),
    which is all verification adds. Goal: at most +10% on the cached rerun.
(b) Reading. Two stores of the same random float32 rows (about 100 MB, chunks of
    4,096 rows), written by the writer with and without the CRC32C codec (zstd level 3
    before it, or no compression), each read as ActivationStore.iter_batches does
    (shuffled batches of 4,096, 8 chunks at a time), alternately. Goal: throughput
    within 10%.

Usage: python benchmarks/integrity.py [--experiment quickstart] [--reruns 3] [--rows 32768] [--d-model 768]
                                      [--compression zstd|none] [--rounds 9] [--skip-rerun] [--skip-read]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

GOAL = 0.10
CHUNK_ROWS, READ_BATCH = 4096, 4096
HOOK = "blocks.0.hook_resid_post"


def timed_cli(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "interp_pipeline", *args], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"run failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    if "warning: cache entry" in done.stdout:
        sys.exit(f"an entry failed verification on an untouched cache:\n{done.stdout}")
    return elapsed


def lookups(cache_root: Path, verify: bool) -> tuple[float, int, int]:
    """Seconds to look up (and verify) every complete entry; entries, bytes hashed or listed."""
    from interp_pipeline.runner.integrity import SKIP_ENV
    from interp_pipeline.runner.stage_cache import MARKER, StageCache

    entries = [p for p in cache_root.glob("*/*") if (p / MARKER).is_file()]
    cache = StageCache(cache_root)
    os.environ[SKIP_ENV] = "0" if verify else "1"
    try:
        started = time.perf_counter()
        for path in entries:
            assert cache.lookup(path.parent.name, path.name) is not None, path
        seconds = time.perf_counter() - started
    finally:
        os.environ.pop(SKIP_ENV)
    nbytes = sum(f.stat().st_size for p in entries for f in p.rglob("*") if f.is_file())
    return seconds, len(entries), nbytes


def cached_rerun(experiment: str, reruns: int) -> None:
    args = [f"+experiment={experiment}"]
    with tempfile.TemporaryDirectory() as outputs:
        env = {**os.environ, "INTERP_PIPELINE_OUTPUTS": outputs, "TQDM_DISABLE": "1"}
        env.pop("MLFLOW_TRACKING_URI", None)
        first = timed_cli(args, env)
        verified, unverified = [], []
        for _ in range(reruns):  # alternated, so drift on a shared machine hits both alike
            unverified.append(timed_cli(args, {**env, "INTERP_PIPELINE_SKIP_CACHE_VERIFY": "1"}))
            verified.append(timed_cli(args, env))
        root = Path(outputs) / "cache"
        data = sum(f.stat().st_size for f in root.glob("*/*.data") for f in f.rglob("*") if f.is_file())
        look_off = min(lookups(root, verify=False)[0] for _ in range(3))
        look_on, n_entries, nbytes = min((lookups(root, verify=True) for _ in range(3)), key=lambda r: r[0])
    on, off = statistics.median(verified), statistics.median(unverified)
    print(f"(a) cached rerun of {experiment} ({n_entries} cache entries, {nbytes / 1e6:.1f} MB in them, "
          f"{data / 1e6:.1f} MB in stage_dirs)")
    print(f"    first run (computes):              {first:7.2f} s")
    print(f"    cached rerun, not verified (base): {off:7.2f} s  (median of {reruns}: "
          f"{', '.join(f'{t:.2f}' for t in unverified)})")
    print(f"    cached rerun, verified:            {on:7.2f} s  (median of {reruns}: "
          f"{', '.join(f'{t:.2f}' for t in verified)})")
    print(f"    ratio verified/base:               {on / off:7.3f} (goal <= {1 + GOAL}: "
          f"{'met' if on / off <= 1 + GOAL else 'NOT met'})")
    print(f"    look-ups alone, in process:        {look_off * 1e3:.1f} ms unverified, {look_on * 1e3:.1f} ms "
          f"verified (+{(look_on - look_off) * 1e3:.1f} ms, {(look_on - look_off) / off:.1%} of the base rerun)")


def write_store(path: Path, rows: np.ndarray, compression: str, checksum: bool) -> None:
    """A store written by the writer (layout 2), its CRC32C left out for the baseline."""
    from interp_pipeline.activations import writer
    from interp_pipeline.activations.checksums import codecs
    from interp_pipeline.activations.layout import store_attributes
    from interp_pipeline.activations.writer import mark_complete_if_done, open_or_create

    n, d = rows.shape
    attributes = store_attributes(model={"name": "benchmark"}, hooks=[HOOK], row_shape={HOOK: [d]},
                                  dtype="float32", positions="all", dataset_fingerprint="0" * 16, n_rows=n,
                                  chunk_rows=CHUNK_ROWS, batch_size=1, versions={})
    original = writer.codecs
    writer.codecs = codecs if checksum else (lambda compressor: [] if compressor is None else [compressor])
    try:
        group = open_or_create(str(path), attributes, compression, 3)
    finally:
        writer.codecs = original
    group[f"activations/{HOOK}"][:] = rows
    for name in ("token_ids", "sequence", "position"):
        group[name][:] = np.arange(n, dtype=np.int32)
    group["chunk_done"][:] = 1
    mark_complete_if_done(group)


def read_epoch(path: Path) -> float:
    from interp_pipeline.activations.reader import ActivationStore

    store = ActivationStore.open(path)
    started = time.perf_counter()
    for _ in store.iter_batches(HOOK, READ_BATCH, seed=0, buffer_chunks=8, as_torch=False):
        pass
    return time.perf_counter() - started


def reading(n_rows: int, d_model: int, compression: str, rounds: int) -> None:
    rows = np.random.default_rng(0).standard_normal((n_rows, d_model), dtype=np.float32)
    mb = rows.nbytes / 1e6
    with tempfile.TemporaryDirectory() as folder:
        plain, checked = Path(folder, "plain.zarr"), Path(folder, "crc32c.zarr")
        write_store(plain, rows, compression, checksum=False)
        write_store(checked, rows, compression, checksum=True)
        read_epoch(plain), read_epoch(checked)  # warm the page cache for both
        times: dict[Path, list[float]] = {plain: [], checked: []}
        for _ in range(rounds):
            for path in (plain, checked):
                times[path].append(read_epoch(path))
    base, crc = statistics.median(times[plain]), statistics.median(times[checked])
    print(f"(b) reading {n_rows:,} x {d_model} float32 rows ({mb:.0f} MB), compression {compression}, "
          f"shuffled batches of {READ_BATCH}, median of {rounds}")
    print(f"    without CRC32C (base): {mb / base:7.0f} MB/s  ({base:.2f} s)")
    print(f"    with CRC32C:           {mb / crc:7.0f} MB/s  ({crc:.2f} s)")
    ratio = base / crc
    print(f"    throughput ratio:      {ratio:7.3f} (goal >= {1 - GOAL}: {'met' if ratio >= 1 - GOAL else 'NOT met'})")


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="quickstart")
    parser.add_argument("--reruns", type=int, default=3)
    parser.add_argument("--rows", type=int, default=32768)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--compression", choices=("zstd", "none"), default="zstd")
    parser.add_argument("--rounds", type=int, default=9, help="reads of each store (alternated)")
    parser.add_argument("--skip-rerun", action="store_true")
    parser.add_argument("--skip-read", action="store_true")
    args = parser.parse_args(argv)
    if not args.skip_read:
        reading(args.rows, args.d_model, args.compression, args.rounds)
    if not args.skip_rerun:
        cached_rerun(args.experiment, args.reruns)


if __name__ == "__main__":
    main()
