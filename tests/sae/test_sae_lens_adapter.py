"""SAELens's private members that we override or swap: all in one module, and each confirmed in the installed
SAELens, so a release that changes one fails here (and at the start of training), naming its version."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("sae_lens")

from sae_lens import __version__ as sae_lens_version  # noqa: E402
from sae_lens.training import activation_scaler, multi_sae_trainer, sae_trainer  # noqa: E402

import interp_pipeline  # noqa: E402
from interp_pipeline.sae.sae_lens_adapter import SAELensChanged, check_sae_lens  # noqa: E402


def test_the_installed_sae_lens_has_what_the_adapter_overrides():
    check_sae_lens()  # raises SAELensChanged naming the installed version and what changed


def test_a_private_method_gone_or_changed_is_named_with_the_version(monkeypatch):
    monkeypatch.delattr(sae_trainer.SAETrainer, "_is_logging_step")
    monkeypatch.setattr(multi_sae_trainer.MultiSAETrainer, "_update_pbar", lambda self, outputs, bar: None)
    with pytest.raises(SAELensChanged) as caught:
        check_sae_lens()
    message = str(caught.value)
    assert message.startswith(f"SAELens {sae_lens_version} changed what interp_pipeline.sae.sae_lens_adapter relies on")
    assert "sae_lens.training.sae_trainer.SAETrainer._is_logging_step is gone" in message
    assert ("sae_lens.training.multi_sae_trainer.MultiSAETrainer._update_pbar takes (self, outputs, bar), "
            "not (self, step_outputs, pbar, update_interval)") in message


def test_a_swapped_global_gone_or_unused_is_named(monkeypatch):
    monkeypatch.delattr(activation_scaler, "tqdm")

    def fit(self):  # a fit() that no longer calls _update_pbar, nor makes its bar with tqdm
        return self.sae

    monkeypatch.setattr(sae_trainer.SAETrainer, "fit", fit)
    with pytest.raises(SAELensChanged) as caught:
        check_sae_lens()
    message = str(caught.value)
    assert "sae_lens.training.activation_scaler.tqdm is gone" in message
    assert "SAETrainer._update_pbar is no longer called by fit" in message
    assert "SAETrainer.fit no longer makes its bar with the module's tqdm" in message


def test_no_other_module_touches_sae_lens_private_members():
    package = Path(interp_pipeline.__file__).parent
    reaching = re.compile(r"def _update_pbar|def _is_logging_step|\.tqdm\s*=")
    found = [str(path.relative_to(package)) for path in package.rglob("*.py") if reaching.search(path.read_text())]
    assert found == ["sae/sae_lens_adapter.py"]
