"""Training checkpoints that resume bit for bit and load with ``torch.load(weights_only=True)``.

A checkpoint holds only tensors and plain Python types: the model, optimizer and scheduler
state dicts, the per-epoch history, the arguments that must match on resume, and the random
number generator states of Python, NumPy and torch (CPU and CUDA) converted to tensors.
It is written atomically (temporary file + ``os.replace``, see :mod:`divqat.utils`), so an
interrupted run leaves the previous epoch's checkpoint intact.
"""
import random

import numpy as np
import torch

from divqat.utils import atomic_save, load_torch_file

CHECKPOINT_NAME = "checkpoint.pt"
KEYS = ("epoch", "model", "optimizer", "scheduler", "history", "signature", "rng")


def rng_state():
    """The state of every global random number generator, as tensors and plain types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    """Restore the generators saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path, *, epoch, model, optimizer, scheduler, history, signature):
    """Atomically write the state after ``epoch`` finished epochs to ``path``."""
    atomic_save({  # the keys of KEYS
        "epoch": int(epoch),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "history": history,
        "signature": signature,
        "rng": rng_state(),
    }, path)


def load_checkpoint(path, signature, device="cpu"):
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises ValueError naming the file when it is unreadable or not a checkpoint, or when it was
    written by a run with other arguments (``signature``), since resuming it would silently
    train a different model.
    """
    state = load_torch_file(path, "checkpoint", map_location=device)
    missing = [k for k in KEYS if k not in state] if isinstance(state, dict) else list(KEYS)
    if missing:
        raise ValueError(f"checkpoint {path} is not a divqat training checkpoint (no {', '.join(missing)}): remove it")
    saved = state["signature"]
    diff = sorted(k for k in set(saved) | set(signature) if saved.get(k) != signature.get(k))
    if diff:
        details = ", ".join(f"{k}={saved.get(k)!r} (now {signature.get(k)!r})" for k in diff)
        raise ValueError(f"resume: checkpoint {path} was written with other arguments: {details}")
    return state
