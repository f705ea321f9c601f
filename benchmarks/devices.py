"""The devices a benchmark runs on: the CPU, and the CUDA device too when this machine has one, in the
same run, so a GPU machine's figures come with the CPU's beside them (issue 24). Each is named as
benchmarks/README.md reports it: the card's name, or the CPU with torch's thread count."""

from __future__ import annotations

from typing import Any


def benchmark_devices(requested: list[str] | None = None) -> list[str]:
    """``requested`` as given (``--devices cpu cuda``), else the CPU and, when torch sees one, ``cuda``."""
    import torch

    if requested:
        return list(requested)
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def device_name(device: str) -> str:
    """'NVIDIA H100 80GB HBM3 (cuda)' or 'cpu, 1 torch thread(s)'."""
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))} ({device})"
    return f"cpu, {torch.get_num_threads()} torch thread(s)"


def synchronize(device: Any) -> None:
    """Wait for the device's queued work, so that a timer read after it counts that work (a no-op on the CPU)."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize(torch.device(str(device)))
