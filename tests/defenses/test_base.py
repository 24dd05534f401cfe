"""The contract every defense keeps (divqat.defenses.base): rows on the simplex, any shape,
empty batches, independent rows, argmax kept where promised, bad calls refused, and the
composition with the BlackBox."""
import pytest
import torch
import torch.nn.functional as F
from defense_helpers import all_defenses, make_mlp, make_probs
from hypothesis import given, settings
from hypothesis import strategies as st

from divqat.defenses import DCP, DEFENSES, MAD, AdaptiveMisinformation, LabelOnly, ReverseSigmoid, Rounding, TopK


def test_every_registered_defense_is_covered():
    covered = {type(d) for d in all_defenses(5, 4).values()}
    assert covered == set(DEFENSES.values())


@pytest.mark.parametrize("c", [4, 12])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_nonnegative_and_sum_to_one(c, dtype):
    p = make_probs(6, c).to(dtype)  # (float32 rows sum to 1 up to rounding)
    x = torch.randn(p.shape[0], 5)
    for name, defense in all_defenses(5, c).items():
        y = defense(p, x)
        assert y.shape == p.shape and y.dtype == dtype, name
        assert bool((y >= 0).all()) and bool(torch.isfinite(y).all()), name
        torch.testing.assert_close(y.double().sum(dim=1), torch.ones(len(p), dtype=torch.float64),
                                   rtol=0, atol=1e-6, msg=name)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(0, 9), c=st.integers(2, 17), scale=st.sampled_from([0.0, 0.5, 3.0, 30.0]),
       seed=st.integers(0, 2**16))
def test_any_shape_and_non_contiguous_views(n, c, scale, seed):
    """Odd sizes, empty batches and transposed (non-contiguous) views give the contiguous answer."""
    g = torch.Generator().manual_seed(seed)
    p = F.softmax(torch.randn(c, n, generator=g, dtype=torch.float64) * scale, dim=0).T  # a (n, c) view
    x = torch.randn(n, 5, generator=g)
    for name, defense in all_defenses(5, c).items():
        if name == "topk" and c < 3 or name.startswith("random_noise"):
            continue  # TopK(3) needs 3 classes; the noise stream differs between the two calls
        y = defense(p, x)
        assert bool((y >= 0).all()), name
        torch.testing.assert_close(y.sum(dim=1), torch.ones(n, dtype=torch.float64), rtol=0, atol=1e-9, msg=name)
        torch.testing.assert_close(y, defense(p.contiguous(), x), rtol=0, atol=1e-12, msg=name)


def test_empty_batch():
    p, x = torch.empty(0, 5), torch.empty(0, 3)
    for name, defense in all_defenses(3, 5).items():
        assert defense(p, x).shape == (0, 5), name


def test_rows_are_independent_in_mixed_batches():
    """A batch whose rows predict different classes gives each row what it would get alone."""
    c = 6
    p = make_probs(3, c, seed=7)
    assert len(set(p.argmax(dim=1).tolist())) > 1  # mixed predictions
    x = torch.randn(len(p), 5)
    for name, defense in all_defenses(5, c).items():
        if name.startswith("random_noise"):
            continue  # its noise stream advances with each row drawn
        alone = torch.cat([defense(p[i:i + 1], x[i:i + 1]) for i in range(len(p))])
        torch.testing.assert_close(defense(p, x), alone, rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("c", [6, 12])  # 12: MAD's argmax-preserving search is greedy
def test_label_preserving_defenses_keep_the_argmax(c):
    p = make_probs(8, c, seed=11)
    p = p[(p.topk(2, dim=1).values[:, 0] > p.topk(2, dim=1).values[:, 1])]  # a unique top class
    x = torch.randn(len(p), 5)
    model = make_mlp(5, c, seed=2)
    for defense in (TopK(1), TopK(3), TopK(c), LabelOnly(), MAD(model, 2.0, keep_argmax=True),
                    MAD(model, 0.3, ydist="l2", keep_argmax=True)):
        assert torch.equal(defense(p, x).argmax(dim=1), p.argmax(dim=1)), repr(defense)
    for decimals in (0, 1, 2):  # weakly: the top class stays a top class
        y = Rounding(decimals)(p)
        assert torch.equal(y.gather(1, p.argmax(dim=1, keepdim=True)).squeeze(1), y.max(dim=1).values)


def test_bad_calls_raise_value_error():
    p = make_probs(1, 4)
    with pytest.raises(ValueError, match="k must be <= the number of classes 4"):
        TopK(5)(p)
    with pytest.raises(ValueError, match="probs"):
        DCP(0.5)(p[0])
    with pytest.raises(ValueError, match="probs"):
        DCP(0.5)(p.long())
    with pytest.raises(ValueError, match="x"):
        MAD(make_mlp(2, 4), 0.5)(p)
    with pytest.raises(ValueError, match="x"):
        AdaptiveMisinformation(make_mlp(2, 4), 0.5)(p, torch.randn(len(p) + 1, 2))
    with pytest.raises(ValueError, match="same 4 classes"):
        MAD(make_mlp(2, 3), 0.5)(p, torch.randn(len(p), 2))


def test_defenses_compose_with_the_blackbox():
    from divqat.blackbox import BlackBox

    victim = make_mlp(3, 4, seed=14)
    meta = dict(num_classes=4, in_channels=1, image_size=(1, 3), mean=(0.5,), std=(0.5,))
    x = torch.rand(10, 1, 1, 3)
    for defense in (DCP(0.8), ReverseSigmoid(0.5, 0.5), TopK(2), Rounding(1), LabelOnly()):
        box = BlackBox(torch.nn.Sequential(torch.nn.Flatten(), victim), defense=defense, meta=meta)
        with torch.no_grad():
            expected = defense(F.softmax(victim(x.flatten(1)), dim=1))
        torch.testing.assert_close(box.query(x), expected, msg=repr(defense))
        assert box.defense_id == repr(defense)
