"""The offline outlier set (divqat.data.outliers): deterministic, digit-free, cached."""
import unicodedata

import numpy as np
import pytest
import torch

from divqat.data import outliers
from divqat.data.outliers import (
    DIGIT_LOOKALIKES,
    glyph_characters,
    is_outlier_character,
    load_outliers,
    outlier_batch,
    outlier_cache_path,
    render_glyphs,
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIVQAT_DATA", str(tmp_path))
    outliers._float_images.cache_clear()
    yield tmp_path
    outliers._float_images.cache_clear()


def test_same_seed_same_images_other_seed_other_images():
    a, b, c = render_glyphs(24, seed=3), render_glyphs(24, seed=3), render_glyphs(24, seed=4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_shape_dtype_range_and_no_blank_image(channels, size):
    images = render_glyphs(40, channels, size, seed=0)
    assert images.shape == (40, channels, size, size) and images.dtype == np.uint8
    spread = images.reshape(40, -1).astype(np.int32)
    # every image has ink well above its background: a glyph or shape was drawn
    assert (spread.max(1) - np.median(spread, 1) > 60).all()


def test_no_digit_in_any_script_is_drawable():
    drawable = set("".join(glyph_characters().values()))
    assert len(drawable) > 1000  # letters of several scripts and symbols
    for ch in drawable:
        assert unicodedata.category(ch)[0] != "N", ch
        assert unicodedata.digit(ch, None) is None and unicodedata.numeric(ch, None) is None, ch
        assert ch not in DIGIT_LOOKALIKES
    assert not any(c in drawable for c in "0123456789٠١٢٣٤٥٦٧٨٩०१२३४५६७८९")
    assert {"A", "Σ", "Ж", "א", "∀"} <= drawable  # Latin, Greek, Cyrillic, Hebrew, maths


@pytest.mark.parametrize("ch", ["7", "Ⅳ", "½", "O", "l", "Ö", "①", "○"])
def test_digits_and_lookalikes_are_refused(ch):
    assert not is_outlier_character(ch)


def test_generated_once_then_read_from_the_cache(cache, monkeypatch):
    first = load_outliers(count=12, seed=5)
    path = outlier_cache_path("glyphs", 12, 1, 28, 5)
    assert path.is_file() and str(path).startswith(str(cache))
    assert first.dtype == torch.float32 and 0 <= first.min() and first.max() <= 1
    torch.testing.assert_close(first, torch.from_numpy(render_glyphs(12, seed=5)).float() / 255, rtol=0, atol=0)
    outliers._float_images.cache_clear()
    monkeypatch.setattr(outliers, "render_glyphs", lambda *a: pytest.fail("regenerated despite the cache"))
    assert torch.equal(load_outliers(count=12, seed=5), first)
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left no temporary behind


def test_batch_matches_the_shape_and_draws_from_the_set(cache):
    like = torch.zeros(7, 3, 32, 32, dtype=torch.float64)
    torch.manual_seed(0)
    batch = outlier_batch(like, count=10)
    assert batch.shape == like.shape and batch.dtype == torch.float64
    pool = load_outliers(count=10, channels=3, size=32).double()
    torch.manual_seed(0)
    torch.testing.assert_close(batch, pool[torch.randint(10, (7,))], rtol=0, atol=0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="outlier set"):
        load_outliers("kmnist")
    with pytest.raises(ValueError, match="count"):
        render_glyphs(0)
    with pytest.raises(ValueError, match="like"):
        outlier_batch(torch.zeros(2, 1, 28, 20))
