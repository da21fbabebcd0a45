"""TopK: selection, index encodings, payload bytes by hand, decode errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from fedcomp.compressors.base import DecodeError, Encoded
from fedcomp.compressors.topk import TopK


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def normal(n: int, seed: int = 0) -> np.ndarray:
    return rng(seed).standard_normal(n, dtype=np.float32)


def kept_mask(decoded: np.ndarray) -> np.ndarray:
    return decoded.reshape(-1) != 0


def test_payload_80000_bytes_by_hand():
    # 1,000,000 fp32 entries at density 0.01: 10,000 values x 4 B + 10,000 int32 x 4 B.
    x = normal(1_000_000)
    enc = TopK(density=0.01, selection="exact", index_encoding="int32").encode({"w": x}, rng())
    assert set(enc.arrays) == {"w/values", "w/idx"}
    assert enc.arrays["w/values"].dtype == np.float32 and enc.arrays["w/values"].shape == (10_000,)
    assert enc.arrays["w/idx"].dtype == np.int32 and enc.arrays["w/idx"].shape == (10_000,)
    assert enc.payload_bytes == 10_000 * 4 + 10_000 * 4 == 80_000
    assert enc.meta == {"tensors": {"w": {"shape": [1_000_000], "dtype": "<f4", "enc": "int32"}}}


def test_exact_keeps_the_k_largest_magnitudes():
    x = normal(100_000).reshape(100, 1000)
    t = TopK(density=0.01, selection="exact", index_encoding="int32")
    dec = t.decode(t.encode({"w": x}, rng()))["w"]
    assert dec.shape == x.shape and dec.dtype == np.float32
    mask = kept_mask(dec)
    assert mask.sum() == 1000
    mags = np.abs(x.reshape(-1))
    assert mags[mask].min() >= mags[~mask].max()
    np.testing.assert_array_equal(dec.reshape(-1)[mask], x.reshape(-1)[mask])


def test_sampled_is_a_magnitude_cut_near_k_and_reproducible():
    x = normal(1_000_000, seed=3)
    t = TopK(density=0.01)  # selection="sampled" by default; 1M > sample_size
    enc = t.encode({"w": x}, rng(7))
    dec = t.decode(enc)["w"]
    mask = kept_mask(dec)
    assert 0.9 * 10_000 <= mask.sum() <= 1.1 * 10_000
    mags = np.abs(x)
    assert mags[mask].min() >= mags[~mask].max()
    np.testing.assert_array_equal(dec[mask], x[mask])
    again = t.encode({"w": x}, rng(7))
    assert all(np.array_equal(again.arrays[k], enc.arrays[k]) for k in enc.arrays)


def test_threshold_only_keeps_every_entry_at_or_above_it():
    x = normal(50_000)
    t = TopK(density=None, threshold=1.5)
    dec = t.decode(t.encode({"w": x}, rng()))["w"]
    np.testing.assert_array_equal(kept_mask(dec), np.abs(x) >= 1.5)


def test_density_and_threshold_keep_the_intersection():
    x = normal(10_000)
    exact = TopK(density=0.2, selection="exact")
    both = TopK(density=0.2, threshold=1.5, selection="exact")
    top = kept_mask(exact.decode(exact.encode({"w": x}, rng()))["w"])
    kept = kept_mask(both.decode(both.encode({"w": x}, rng()))["w"])
    np.testing.assert_array_equal(kept, top & (np.abs(x) >= 1.5))


def test_bitmap_payload_is_ceil_numel_over_8_plus_values():
    n = 1_000_003  # not a multiple of 8
    x = normal(n)
    t = TopK(density=0.3, selection="exact", index_encoding="bitmap")
    enc = t.encode({"w": x}, rng())
    k = round(0.3 * n)
    assert enc.arrays["w/idx"].dtype == np.uint8
    assert enc.arrays["w/idx"].nbytes == -(-n // 8) == 125_001
    assert enc.payload_bytes == 4 * k + 125_001
    dec = t.decode(enc)["w"]
    assert kept_mask(dec).sum() == k


@pytest.mark.parametrize(
    ("gap", "dtype"), [(10, np.uint8), (255, np.uint8), (300, np.uint16), (70_000, np.uint32)]
)
def test_delta_uses_the_smallest_dtype_that_fits_the_largest_gap(gap, dtype):
    n = gap * 50
    x = np.zeros(n, dtype=np.float32)
    x[gap - 1 :: gap] = 1.0  # first position gap - 1, then gaps of exactly `gap`
    t = TopK(density=None, threshold=0.5, index_encoding="delta")
    enc = t.encode({"w": x}, rng())
    idx = enc.arrays["w/idx"]
    assert idx.dtype == dtype and idx.size == 50
    assert enc.payload_bytes == 50 * 4 + 50 * np.dtype(dtype).itemsize
    np.testing.assert_array_equal(t.decode(enc)["w"], x)


def hand_sizes(n: int, positions: np.ndarray) -> dict[str, int]:
    k = positions.size
    gaps = np.diff(positions, prepend=0)
    width = 1 if gaps.max() <= 255 else 2 if gaps.max() <= 65_535 else 4
    return {
        "int32": 8 * k,
        "bitmap": 4 * k + -(-n // 8),
        "delta": 4 * k + width * k,
        "dense": 4 * n,
    }


@pytest.mark.parametrize("density", [0.001, 0.01, 0.2, 0.99, 1.0])
def test_auto_picks_the_cheapest_encoding(density):
    n = 200_001
    x = normal(n, seed=1)
    t = TopK(density=density, selection="exact")
    enc = t.encode({"w": x}, rng())
    positions = np.flatnonzero(kept_mask(t.decode(enc)["w"]))
    sizes = hand_sizes(n, positions)
    best = min(sizes.values())
    assert enc.payload_bytes == best
    assert sizes[enc.meta["tensors"]["w"]["enc"]] == best


def test_auto_logs_the_chosen_encoding(caplog):
    with caplog.at_level(logging.DEBUG, logger="fedcomp.compressors.topk"):
        TopK(density=0.01).encode({"fc1.weight": normal(5000)}, rng())
    assert any("fc1.weight" in r.getMessage() and "index_encoding=" in r.getMessage() for r in caplog.records)


def test_model_scope_uses_one_global_cut():
    small = normal(200_000, seed=1) * 0.01
    large = normal(200_000, seed=2)
    tensors = {"small": small, "large": large}
    for selection in ("exact", "sampled"):
        t = TopK(density=0.01, scope="model", selection=selection, sample_size=20_000)
        dec = t.decode(t.encode(tensors, rng()))
        kept_small, kept_large = kept_mask(dec["small"]), kept_mask(dec["large"])
        total = kept_small.sum() + kept_large.sum()
        if selection == "exact":
            assert total == 4000
        else:
            assert 0.8 * 4000 <= total <= 1.2 * 4000
        assert kept_large.sum() > 100 * max(kept_small.sum(), 1)  # large updates dominate
        all_mags = np.abs(np.concatenate([small, large]))
        all_kept = np.concatenate([kept_small, kept_large])
        assert all_mags[all_kept].min() >= all_mags[~all_kept].max()


def test_min_numel_sends_small_tensors_whole():
    bias = normal(10, seed=4)
    weight = normal(10_000, seed=5)
    t = TopK(density=0.01, min_numel=100)
    enc = t.encode({"w": weight, "b": bias}, rng())
    assert enc.meta["tensors"]["b"]["enc"] == "dense"
    assert "b/idx" not in enc.arrays
    dec = t.decode(enc)
    np.testing.assert_array_equal(dec["b"], bias)
    assert kept_mask(dec["w"]).sum() == 100


def test_names_shapes_dtypes_and_order_are_restored():
    tensors = {
        "conv1.weight": normal(6 * 1 * 5 * 5).reshape(6, 1, 5, 5),
        "conv1.bias": normal(6).astype(np.float64),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "steps": np.arange(5, dtype=np.int64),  # not floating: passes through
    }
    t = TopK(density=0.5)
    enc = t.encode(tensors, rng())
    assert enc.arrays["steps"] is tensors["steps"]
    assert enc.arrays["conv1.bias/values"].dtype == np.float32
    dec = t.decode(enc)
    assert list(dec) == list(tensors)
    for name, x in tensors.items():
        assert dec[name].shape == x.shape and dec[name].dtype == x.dtype, name
    np.testing.assert_array_equal(dec["scalar"], tensors["scalar"])


def test_all_zero_tensor_sends_nothing():
    x = np.zeros(300_000, dtype=np.float32)
    t = TopK(density=0.01)
    enc = t.encode({"w": x}, rng())
    assert enc.arrays["w/values"].size == 0
    np.testing.assert_array_equal(t.decode(enc)["w"], x)


def test_encode_does_not_modify_its_input():
    x = normal(1000)
    before = x.copy()
    TopK(density=0.1).encode({"w": x}, rng())
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"density": 1.5}, "compressor.density"),
        ({"density": 0}, "compressor.density"),
        ({"density": "a lot"}, "compressor.density"),
        ({"density": None, "threshold": -1.0}, "compressor.threshold"),
        ({"density": None, "threshold": None}, "compressor.density"),
        ({"scope": "layer"}, "compressor.scope"),
        ({"selection": "sorted"}, "compressor.selection"),
        ({"index_encoding": "int64"}, "compressor.index_encoding"),
        ({"min_numel": -1}, "compressor.min_numel"),
        ({"sample_size": 0}, "compressor.sample_size"),
    ],
)
def test_bad_params_raise_value_error_naming_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        TopK(**kwargs)


def encoded(index_encoding: str) -> tuple[TopK, Encoded]:
    t = TopK(density=0.1, selection="exact", index_encoding=index_encoding)
    return t, t.encode({"fc1.weight": normal(1000).reshape(10, 100)}, rng())


def test_decode_rejects_wrong_value_count():
    t, enc = encoded("int32")
    enc.arrays["fc1.weight/values"] = enc.arrays["fc1.weight/values"][:-1]
    with pytest.raises(DecodeError, match="fc1.weight"):
        t.decode(enc)


def test_decode_rejects_positions_outside_the_shape():
    t, enc = encoded("int32")
    enc.meta["tensors"]["fc1.weight"]["shape"] = [10, 10]  # shape mismatch
    with pytest.raises(DecodeError, match="fc1.weight"):
        t.decode(enc)


def test_decode_rejects_wrong_bitmap_length():
    t, enc = encoded("bitmap")
    enc.arrays["fc1.weight/idx"] = enc.arrays["fc1.weight/idx"][:-1]
    with pytest.raises(DecodeError, match="fc1.weight"):
        t.decode(enc)


def test_decode_rejects_non_increasing_delta():
    t, enc = encoded("delta")
    enc.arrays["fc1.weight/idx"] = enc.arrays["fc1.weight/idx"].copy()
    enc.arrays["fc1.weight/idx"][3] = 0
    with pytest.raises(DecodeError, match="fc1.weight"):
        t.decode(enc)


def test_decode_rejects_unknown_tag_and_missing_arrays():
    t, enc = encoded("int32")
    enc.meta["tensors"]["fc1.weight"]["enc"] = "rle"
    with pytest.raises(DecodeError, match="fc1.weight.*rle"):
        t.decode(enc)
    t, enc = encoded("int32")
    del enc.arrays["fc1.weight/idx"]
    with pytest.raises(DecodeError, match="fc1.weight"):
        t.decode(enc)


def test_decode_rejects_dense_shape_mismatch():
    t = TopK(density=1.0)
    enc = t.encode({"fc2.bias": normal(10)}, rng())
    assert enc.meta["tensors"]["fc2.bias"]["enc"] == "dense"
    enc.meta["tensors"]["fc2.bias"]["shape"] = [11]
    with pytest.raises(DecodeError, match="fc2.bias"):
        t.decode(enc)


@pytest.mark.parametrize("selection", ["sampled", "exact"])
def test_all_zero_tensor_sends_nothing_under_either_selection(selection):
    x = np.zeros(1000, dtype=np.float32)
    enc = TopK(density=0.01, selection=selection, index_encoding="int32").encode({"w": x}, rng())
    assert enc.arrays["w/values"].size == 0 and enc.arrays["w/idx"].size == 0
    assert enc.payload_bytes == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("kwargs", [{}, {"selection": "exact"}, {"scope": "model"}, {"min_numel": 10**6}])
def test_non_finite_update_raises_naming_the_tensor(bad, kwargs):
    x = normal(200_000)
    x[5] = bad
    with pytest.raises(ValueError, match="'fc.weight'"):
        TopK(density=0.01, sample_size=10_000, **kwargs).encode({"fc.weight": x}, rng())


def test_sampled_keeps_exactly_k_like_exact():
    x = normal(1_000_000, seed=9)
    sampled = TopK(density=0.01).encode({"w": x}, rng(3))
    exact = TopK(density=0.01, selection="exact").encode({"w": x}, rng(3))
    assert sampled.meta == exact.meta
    for key in exact.arrays:
        np.testing.assert_array_equal(sampled.arrays[key], exact.arrays[key])
