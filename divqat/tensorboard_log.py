"""Optional TensorBoard event files of training (``--tensorboard DIR`` of ``divqat train`` and
``divqat attack``).

Inside ``with tensorboard_log(DIR):`` the training loops of divqat (a victim's epochs in
:func:`divqat.train.loop.fit`, a surrogate's epochs, data-free iterations) write their numbers
as TensorBoard scalars through ``torch.utils.tensorboard``, tagged ``<loop>/<monitor>``
(``fp/loss``, ``divqat/kl_fp_q``, ``knockoff/loss``); outside it :func:`log_scalars` does
nothing. Needs the optional ``tensorboard`` package: ``pip install 'divqat[tensorboard]'``.
"""
import contextlib
import contextvars
import math
import numbers

__all__ = ["require_tensorboard", "tensorboard_log", "log_scalars"]

_WRITER = contextvars.ContextVar("divqat_tensorboard_writer", default=None)


def require_tensorboard(option="--tensorboard"):
    """ValueError naming ``option`` unless the tensorboard package is installed."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ValueError(f"{option} needs the tensorboard package: pip install tensorboard "
                         "(or pip install 'divqat[tensorboard]')") from None


@contextlib.contextmanager
def tensorboard_log(log_dir):
    """Write the training loops' scalars run inside this block to an event file in ``log_dir``
    (created); ``log_dir=None`` writes nothing. Yields the ``SummaryWriter`` or None."""
    if log_dir is None:
        yield None
        return
    from divqat.checks import check_output_dir

    require_tensorboard()
    check_output_dir("--tensorboard", log_dir)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir))
    token = _WRITER.set(writer)
    try:
        yield writer
    finally:
        _WRITER.reset(token)
        writer.close()


def log_scalars(prefix, values, step):
    """Add each finite number of ``values`` (a dict) as scalar ``prefix/key`` at ``step``, when a
    :func:`tensorboard_log` block is open; other values (strings, booleans, None) are skipped."""
    writer = _WRITER.get()
    if writer is None:
        return
    for key, value in values.items():
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
            writer.add_scalar(f"{prefix}/{key}", float(value), step)
