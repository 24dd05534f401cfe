"""A per-cell claim: an exclusive lock so that one process at a time computes a cell of an
output directory, whichever driver or worker it belongs to.

The claim is a ``flock`` on ``OUT/locks/<key>.lock``. The kernel drops it when the process
holding it exits, however it exits, so a worker killed mid-cell leaves no stale claim and the
retried cell can take it at once. A second process asking for a claimed cell waits for it and
then finds the cell finished in the cache. On NFS, Linux implements ``flock`` with the server's
byte-range locks, so the claim holds across the nodes of a cluster that share ``OUT``.

Taking the claim also removes the leftovers of a writer killed inside an atomic write
(``.NAME.*.tmp`` next to the cell's record, see :func:`divqat.utils.remove_temporaries`): only the
holder of the claim writes that record, so any such file is stale.
"""
import contextlib
import fcntl
import os
from pathlib import Path

from divqat.utils import remove_temporaries


@contextlib.contextmanager
def claim(root, key, record_path):
    """Hold the claim on cell ``key`` of output directory ``root`` (waits while another process
    holds it); ``record_path`` is the cell's record, whose stale temporary files are removed."""
    locks = Path(root) / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        remove_temporaries(record_path)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock
