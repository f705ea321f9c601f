"""Attribution graphs on a GPT-2-shaped model with random transcoders: seconds and peak memory.

GPT-2 small's shape (12 layers, d_model 768, 12 heads, d_mlp 3072, 50,257 tokens, random weights),
a random ReLU transcoder per layer 8x wide (6,144 latents; encoder bias set so ~0.6% fire), and a
16-token prompt. Each setting runs in its own process (peak RSS is per process): ``max_feature_nodes``
features get rows, the other candidates only columns. Memory beyond the adjacency's own size should
not grow with the candidates.

    .venv/bin/python benchmarks/attribution_graph.py            # 256, 1024, 4096 feature nodes
    .venv/bin/python benchmarks/attribution_graph.py 512         # one setting
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def one(max_feature_nodes: int, batch_size: int = 64) -> dict:
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from interp_pipeline.transcoders.attribution import attribute
    from tests.support.transcoders import random_transcoders

    torch.set_num_threads(1)
    model = HookedTransformer(HookedTransformerConfig(
        n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257, n_ctx=1024, act_fn="gelu_new",
        normalization_type="LN", seed=0)).eval()
    transcoders = random_transcoders(model, 8 * 768, scale=768 ** -0.5, bias=-2.5)
    tokens = torch.randint(1, 50257, (16,), generator=torch.Generator().manual_seed(0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started, cpu = time.perf_counter(), time.process_time()
    graph = attribute(model, transcoders, tokens, batch_size=batch_size, max_feature_nodes=max_feature_nodes)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    from interp_pipeline.transcoders.replacement import run_prompt

    candidates = int((run_prompt(model, transcoders, tokens).activations != 0).sum())
    return {"max_feature_nodes": max_feature_nodes, "candidates": candidates, "features": graph.n_features,
            "nodes": graph.adjacency.shape[0], "logits": graph.n_logits, "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "peak_rss_mib": round(peak), "rss_before_mib": round(before),
            "adjacency_mib": round(graph.adjacency.numel() * 4 / 2 ** 20, 1),
            "row_buffer_mib": round((graph.n_features + graph.n_logits) * (candidates + 17 * 16 + graph.n_logits)
                                    * 4 / 2 ** 20, 1)}


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(one(int(sys.argv[2]))))
    else:
        for n in [int(a) for a in sys.argv[1:]] or [256, 1024, 4096]:
            done = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True)
            print(done.stdout.strip() or done.stderr[-2000:], flush=True)
