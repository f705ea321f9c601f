"""One torch thread for these tests, as for the SAE tests (the same fixture)."""

from tests.sae.conftest import one_torch_thread  # noqa: F401  (an autouse fixture)
