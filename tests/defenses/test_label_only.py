"""Label only against hand-written one-hot rows."""
import torch

from divqat.defenses import LabelOnly

P = torch.tensor([[0.1, 0.7, 0.2, 0.0], [0.5, 0.1, 0.15, 0.25], [0.05, 0.05, 0.1, 0.8]])


def test_label_only_per_row():
    torch.testing.assert_close(LabelOnly()(P), torch.tensor([[0., 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]]))
