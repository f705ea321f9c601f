"""One torch thread for these tests: tiny SAEs gain nothing from more, and on a shared
machine thread hand-offs between busy cores made a 100-step run 7x slower."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
