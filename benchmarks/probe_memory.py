"""Peak memory of the linear_probe stage's streamed (torch) path against the store's size.

    .venv/bin/python benchmarks/probe_memory.py [ROWS ...]

For each size, a store of ROWS rows x 128 float32 (two Gaussian classes by sequence, every
row labelled) is written in a child process; another child fits the
streamed probe (batch_size_rows 4096, 20 L-BFGS iterations) and reports its peak RSS above the RSS it had
after its imports and after opening the store (resource.getrusage), and the peak of Python/numpy
allocations (tracemalloc). The in-memory (scikit-learn) path is measured the same way for contrast.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

D, SEQ_LEN, CHUNK = 128, 8, 4096

WRITE = r"""
import sys, numpy as np
sys.path.insert(0, ".")
import tests.support.stores as stores
stores.D_MODEL = 128  # the hand-written layout's width (its default, 6, is the reader tests')
path, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
y = (np.arange(n) // 8) % 2
x = (rng.normal(size=(n, 128)) + 0.5 * y[:, None]).astype(np.float32)
stores.write_store(path, n, 4096, hooks=("blocks.0.hook_resid_pre",), seq_len=8, values={"blocks.0.hook_resid_pre": x})
"""

FIT = r"""
import json, resource, sys, tracemalloc
import numpy as np, torch
from interp_pipeline.activations.reader import ActivationStore
from interp_pipeline.probes.labels import probe_rows
from interp_pipeline.probes.config import ProbeConfig
from interp_pipeline.probes.run import probe_hook
path, n, backend = sys.argv[1], int(sys.argv[2]), sys.argv[3]
store = ActivationStore.open(path)
assert store.row_shape("blocks.0.hook_resid_pre") == (128,)
seq = n // 8
labels = {"labels": np.tile((np.arange(seq) % 2)[:, None], (1, 8)), "tokens": (7 * np.arange(n) % 50).reshape(seq, 8)}
kib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
import psutil
base = psutil.Process().memory_info().rss / 2**20
tracemalloc.start()
rows = probe_rows(store, labels)
result = probe_hook(store, "blocks.0.hook_resid_pre", rows, ProbeConfig(backend=backend, max_iter=20, batch_size_rows=4096, seed=0))
peak_traced = tracemalloc.get_traced_memory()[1] / 2**20
print(json.dumps({"rows": n, "backend": backend, "rss_peak_above_start_mib": kib() / 1024 - base,
                  "traced_peak_mib": peak_traced, "heldout_acc": result.metrics["heldout_acc"],
                  "store_mib": n * 128 * 4 / 2**20}))
"""


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [32_768, 131_072, 524_288]
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = str(Path(tmp) / f"s{n}.zarr")
            subprocess.run([sys.executable, "-c", WRITE, path, str(n)], check=True)
            for backend in ("torch", "sklearn"):
                out = subprocess.run([sys.executable, "-c", FIT, path, str(n), backend], check=True,
                                     capture_output=True, text=True, env={"OMP_NUM_THREADS": "1",
                                                                          "PATH": "/usr/bin:/bin"}).stdout
                r = json.loads(out.strip().splitlines()[-1])
                print(f"{r['rows']:>8} rows ({r['store_mib']:6.0f} MiB of activations)  {r['backend']:<7}  "
                      f"peak RSS above start {r['rss_peak_above_start_mib']:7.1f} MiB   traced peak "
                      f"{r['traced_peak_mib']:7.1f} MiB   held-out acc {r['heldout_acc']:.3f}", flush=True)


if __name__ == "__main__":
    main()
