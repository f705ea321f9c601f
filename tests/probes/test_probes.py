"""Linear probes: the streamed torch fit against scikit-learn, labels lined up with store rows, the stage."""

from __future__ import annotations

import numpy as np
import pytest

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.probes.fit import fit_sklearn, fit_streamed, standardizer
from interp_pipeline.probes.labels import LabelsShape, check_labels_fit_store
from interp_pipeline.pipeline.shapes import StoreShape


def _blobs(n_classes: int, n: int = 400, d: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, d))
    y = rng.integers(0, n_classes, n)
    return centres[y] + 1.5 * rng.normal(size=(n, d)) + 3.0, y


@pytest.mark.parametrize("n_classes", [2, 4])
def test_streamed_torch_probe_matches_sklearn_on_an_array(n_classes):
    x, y = _blobs(n_classes)
    mean, std = standardizer(x)
    options = dict(C=0.5, max_iter=500, tol=1e-10, mean=mean, std=std)
    reference = fit_sklearn(x, y, n_classes, **{**options, "tol": 1e-10})

    def batches():  # 37 rows at a time: never the whole array at once
        for start in range(0, len(x), 37):
            yield x[start:start + 37], np.arange(start, min(start + 37, len(x)))

    streamed = fit_streamed(batches, y, np.ones(len(y), bool), n_classes, **options)
    assert streamed.weight.shape == reference.weight.shape == (1 if n_classes == 2 else n_classes, x.shape[1])
    np.testing.assert_allclose(streamed.weight, reference.weight, atol=2e-4, rtol=1e-3)
    np.testing.assert_allclose(streamed.bias, reference.bias, atol=2e-4, rtol=1e-3)
    np.testing.assert_array_equal(streamed.predict(x), reference.predict(x))
    # the mean and std come out the same streamed
    streamed_mean, streamed_std = standardizer(batches=batches)
    np.testing.assert_allclose(streamed_mean, mean)
    np.testing.assert_allclose(streamed_std, std)


def test_labels_of_other_sequences_are_refused_before_any_work():
    store = StoreShape({"blocks.0.hook_resid_post": (16,)}, 120, n_sequences=10, seq_len=12)
    check_labels_fit_store("inputs.labels", LabelsShape(10, 12), store)
    with pytest.raises(ConfigError, match=r"^inputs.labels: expected labels for the store's 10 sequences, found "
                                          r"labels for 8"):
        check_labels_fit_store("inputs.labels", LabelsShape(8, 12), store)
    with pytest.raises(ConfigError, match=r"^inputs.labels: expected labels over sequences of the store's 12"):
        check_labels_fit_store("inputs.labels", LabelsShape(10, 13), store)


@pytest.fixture(scope="module")
def induction_store(tmp_path_factory):
    """A random 2-layer model's residual stream over repeated-token probes, and their half labels."""
    from interp_pipeline.stages.cache_activations import cache_activations
    from interp_pipeline.stages.probes import repeated_half_labels
    from interp_pipeline.stages.token_datasets import repeated_tokens
    from tests.support.models import tiny_model

    model = tiny_model(n_layers=2)
    tokens = repeated_tokens(model, n_sequences=24, half_len=8, seed=0)
    hooks = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_post"]
    store = cache_activations(model, tokens, hooks=hooks, chunk_rows=64, stage_dir=tmp_path_factory.mktemp("store"))
    return model, tokens, store, repeated_half_labels(tokens)


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


@pytest.mark.hooked_transformer(reason="its accuracy floors are those of HookedTransformer's random draw "
                                       "(0.86 held out on TransformerLens 4's native init, floor 0.9)")
def test_linear_probe_stage_sklearn_and_streamed_torch_agree(induction_store, tmp_path):
    from interp_pipeline.stages.probes import linear_probe
    from interp_pipeline.tracking.base import NullRun, RecordingTracker

    _, _, store, labels = induction_store
    results = {}
    for backend in ("sklearn", "torch"):
        tracker = RecordingTracker(NullRun(), tmp_path / backend)
        probes = linear_probe(store, labels, backend=backend, batch_size_rows=50, tracker=tracker)
        results[backend] = (probes, tracker.last)
    (sk_probes, sk), (torch_probes, streamed) = results["sklearn"], results["torch"]
    hook = "blocks.1.hook_resid_post"
    assert sorted(sk_probes) == sorted(torch_probes)
    assert sk_probes[f"{hook}/weight"].shape == (1, 32)
    np.testing.assert_allclose(torch_probes[f"{hook}/weight"], sk_probes[f"{hook}/weight"], atol=2e-3, rtol=2e-3)
    for name in ("heldout_acc", "train_acc", "control_heldout_acc"):
        assert streamed[f"{name}/{hook}"] == pytest.approx(sk[f"{name}/{hook}"], abs=1 / 64)
    # Positional embeddings say which half a position is in: decodable from the first layer on;
    # the shuffled-label control stays near chance.
    assert sk[f"heldout_acc/{hook}"] >= 0.9
    assert sk[f"control_heldout_acc/{hook}"] <= 0.75
    assert sk[f"selectivity/{hook}"] == pytest.approx(sk[f"heldout_acc/{hook}"] - sk[f"control_heldout_acc/{hook}"])
    assert sk["n_rows"] == 24 * 16 and sk["n_classes"] == 2
    assert (tmp_path / "sklearn" / "probe_accuracy_by_layer.png").stat().st_size > 0
    # stored as the stage cache stores it: safetensors, read back equal
    from interp_pipeline.storage.cache_codecs import codec_for

    codec = codec_for(sk_probes)
    codec.save(sk_probes, tmp_path / f"probes{codec.suffix}")
    loaded = codec.load(tmp_path / f"probes{codec.suffix}")
    assert sorted(loaded) == sorted(sk_probes) and all(torch_equal(loaded[k], sk_probes[k]) for k in loaded)


def test_labels_made_from_other_tokens_are_refused(induction_store):
    import torch

    from interp_pipeline.stages.probes import linear_probe, repeated_half_labels

    _, tokens, store, _ = induction_store
    other = tokens.clone()
    other[3, 5] = (other[3, 5] + 1) % 50
    with pytest.raises(ConfigError, match=r"^inputs.labels: expected the store's tokens under the labels, found 1 rows "
                                          r"that differ \(row 56: sequence 3, position 5"):
        linear_probe(store, repeated_half_labels(other))
    with pytest.raises(ConfigError, match=r"^inputs.labels: expected labels covering the store's sequences"):
        linear_probe(store, repeated_half_labels(tokens[:10]))
    with pytest.raises(ConfigError, match=r"^hooks\[0\]: expected a hook the store caches"):
        linear_probe(store, repeated_half_labels(tokens), hooks=["blocks.1.hook_resid_pre"])
    assert torch.equal(tokens, induction_store[1])


def test_fact_labels_lay_the_subjects_city_on_their_last_token():
    from interp_pipeline.facts.world import RELATIONS, objects_of
    from interp_pipeline.probes.config import FactLabelsConfig
    from interp_pipeline.stages.probes import _fact_shape, fact_labels
    from interp_pipeline.tasks.base import make_task
    from tests.support.models import task_model

    task = {"name": "facts", "n_subjects": 8, "seed": 0}
    made = make_task(task)
    model = task_model(made, n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, seed=0)
    out = fact_labels(model, task=task, position="subject_last", relation="lives_in")
    shapes = _fact_shape(FactLabelsConfig(task=task), {})
    assert tuple(out["tokens"].shape) == (shapes["labels"].n_sequences, shapes["labels"].seq_len) == (128, 9)
    prompt = made.prompts()[5]  # "the home of S is"-style prompts put the subject mid-prompt
    row = out["labels"]["labels"][5]
    (position,) = (row >= 0).nonzero().flatten().tolist()
    words = model.to_str_tokens(out["tokens"][5])
    assert words[position] == prompt.subject.split()[-1]
    city = RELATIONS["lives_in"][1][objects_of(8, 0)[prompt.subject_id][0]]
    assert model.tokenizer.convert_ids_to_tokens(int(row[position])) == city
