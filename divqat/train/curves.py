"""The training curves of a run as a PNG next to its log.jsonl (matplotlib, Agg backend).

One panel per kind of monitor in the per-epoch records of :func:`divqat.train.loop.fit`: the
training losses (``loss`` and the step's other monitors, e.g. ``ce``), the divergence of the
quantized model from its float teacher on the test set (``kl_fp_q`` = KL(f_fp || f_q),
``l1_fp_q``; docs/science.md §3), and the test accuracy; a panel whose monitors a run does not
log is left out. Written atomically after every epoch, so it follows a running job.
"""
import io
from pathlib import Path

from divqat.utils import atomic_write_bytes

__all__ = ["CURVES_NAME", "curve_panels", "write_curves"]

CURVES_NAME = "curves.png"
_NOT_MONITORS = ("epoch", "lr", "seconds")


def curve_panels(history):
    """``[(title, [monitor, ...]), ...]``: the panels :func:`write_curves` draws for ``history``."""
    keys = []
    for record in history:
        keys += [k for k, v in record.items()
                 if k not in keys and k not in _NOT_MONITORS and isinstance(v, (int, float)) and not isinstance(v, bool)]
    divergence = [k for k in keys if k.startswith(("kl", "l1"))]
    accuracy = [k for k in keys if "accuracy" in k or "agreement" in k]
    losses = [k for k in keys if k not in divergence and k not in accuracy]
    panels = [("training loss", losses), ("divergence from the float model (test set)", divergence),
              ("test accuracy", accuracy)]
    return [(title, monitors) for title, monitors in panels if monitors]


def write_curves(history, path, title=None):
    """Draw the per-epoch monitors of ``history`` (fit's records) into the PNG ``path`` (atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = curve_panels(history)
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (panel, monitors) in zip(axes[0], panels):
        for key in monitors:
            points = [(r["epoch"], r[key]) for r in history if isinstance(r.get(key), (int, float))]
            if points:
                ax.plot(*zip(*points), marker="o", label=key)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(buffer.getvalue(), Path(path))
