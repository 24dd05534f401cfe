"""Top-k against hand-computed renormalised rows."""
import torch

from divqat.defenses import TopK

P = torch.tensor([[0.1, 0.7, 0.2, 0.0], [0.5, 0.1, 0.15, 0.25], [0.05, 0.05, 0.1, 0.8]])


def test_topk_per_row():
    torch.testing.assert_close(TopK(2)(P), torch.tensor([[0., 0.7, 0.2, 0], [0.5, 0, 0, 0.25], [0, 0, 0.1, 0.8]])
                               / torch.tensor([[0.9], [0.75], [0.9]]))
