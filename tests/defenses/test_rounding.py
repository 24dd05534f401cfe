"""Rounding against exact rational largest-remainder rounding."""
from fractions import Fraction

import pytest
import torch
from defense_helpers import make_probs

from divqat.defenses import LabelOnly, Rounding


def _largest_remainder(row, decimals):
    """Exact rational largest-remainder rounding of one row (ties to the lower index)."""
    scale = 10 ** decimals
    fracs = [Fraction(v) for v in row]
    total = sum(fracs)
    units = [f / total * scale for f in fracs]
    base = [int(u) for u in units]
    order = sorted(range(len(units)), key=lambda k: (-(units[k] - base[k]), k))
    for k in order[:scale - sum(base)]:
        base[k] += 1
    return [b / scale for b in base]


@pytest.mark.parametrize("decimals", [0, 1, 2, 4])
def test_rounding_is_largest_remainder_rounding(decimals):
    p = make_probs(3, 7, seed=decimals)
    y = Rounding(decimals)(p)
    expected = torch.tensor([_largest_remainder(row.tolist(), decimals) for row in p], dtype=torch.float64)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-15)
    assert float((y - p).abs().max()) < 10.0 ** -decimals
    if decimals == 0:
        torch.testing.assert_close(y, LabelOnly()(p))
