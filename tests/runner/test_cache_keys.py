from __future__ import annotations

from interp_pipeline.pipeline.spec import parse_stages
from interp_pipeline.storage.cache_keys import stage_cache_key
from interp_pipeline.runner.runner import compute_keys

VERSIONS = {"interp_pipeline": "0.1.0", "torch": "2.13.0", "transformer_lens": "3.9.0", "sae_lens": "6.54.12"}


def keys(numbers_n=3, factor=2.0, start=0, unrelated=10, versions=VERSIONS):
    spec = parse_stages(
        [
            {"name": "numbers", "fn": "t_numbers", "params": {"n": numbers_n, "start": start}},
            {"name": "scaled", "fn": "t_scale", "inputs": {"numbers": "numbers"}, "params": {"factor": factor}},
            {"name": "other", "fn": "t_numbers", "params": {"n": unrelated}},
        ],
        name="p", label="p",
    )
    return compute_keys(spec, versions)


def test_same_inputs_same_keys():
    assert keys() == keys()


def test_a_changed_parameter_changes_its_key_and_downstream_keys():
    base, changed = keys(), keys(numbers_n=4)
    assert changed["numbers"] != base["numbers"]
    assert changed["scaled"] != base["scaled"]  # its input changed
    assert changed["other"] == base["other"]


def test_an_unrelated_parameter_leaves_keys_alone():
    base, changed = keys(), keys(unrelated=11)
    assert changed["numbers"] == base["numbers"] and changed["scaled"] == base["scaled"]
    assert changed["other"] != base["other"]


def test_a_downstream_parameter_does_not_touch_upstream():
    base, changed = keys(), keys(factor=3.0)
    assert changed["numbers"] == base["numbers"] and changed["scaled"] != base["scaled"]


def test_library_versions_enter_every_key():
    bumped = keys(versions={**VERSIONS, "transformer_lens": "3.10.0"})
    assert all(bumped[name] != key for name, key in keys().items())


def test_int_and_integral_float_agree_and_order_does_not_matter():
    a = stage_cache_key("f", 1, {"x": 1, "y": [1.0, 2]}, {}, VERSIONS)
    b = stage_cache_key("f", 1, {"y": [1, 2.0], "x": 1.0}, {}, VERSIONS)
    assert a == b
    assert a != stage_cache_key("f", 2, {"x": 1, "y": [1, 2]}, {}, VERSIONS)  # stage version bumped
