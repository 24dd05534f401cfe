"""A monitor's per-key state as bytes for the key store: a dict of numpy arrays written with
``np.savez`` and read back with ``allow_pickle=False`` (no pickle, so a tampered row cannot
run code; it can only fail to load)."""
import io

import numpy as np

__all__ = ["encode_state", "decode_state"]


def encode_state(state):
    """Bytes of ``state``, a dict {name: numpy array or number}."""
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(value) for name, value in state.items()})
    return buffer.getvalue()


def decode_state(data):
    """The dict of arrays :func:`encode_state` wrote, writable (the monitors update them in
    place; 0-d arrays stay 0-d)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {name: np.array(archive[name]) for name in archive.files}
