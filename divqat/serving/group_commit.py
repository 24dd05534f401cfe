"""Group commit: the requests that arrive while one transaction is being committed share the
next one, so N concurrent callers pay about one commit (one fsync) per round instead of N.

    group = GroupCommit(run_batch)      # run_batch(items) -> one result per item, one transaction
    result = group.submit(item)         # returns after the transaction holding ``item`` committed

At most one batch runs at a time (the leader: the first caller that finds none running);
callers that arrive meanwhile wait, and the first of them whose item is still pending runs the
next batch with every item pending then. A batch that raises gives its exception to every
caller in it; nothing of it was committed.
"""
import threading

__all__ = ["GroupCommit"]


class _Slot:
    __slots__ = ("item", "done", "result", "error")

    def __init__(self, item):
        self.item, self.done, self.result, self.error = item, False, None, None


class GroupCommit:
    """Batches concurrent :meth:`submit` calls into calls of ``run_batch(items)``."""

    def __init__(self, run_batch):
        self._run_batch = run_batch
        self._cond = threading.Condition()
        self._pending = []
        self._running = False

    def submit(self, item):
        """``run_batch``'s result for ``item``, once the batch holding it has run (its exception if it raised)."""
        slot = _Slot(item)
        with self._cond:
            self._pending.append(slot)
            while self._running and not slot.done:
                self._cond.wait()
            if not slot.done:
                batch, self._pending, self._running = self._pending, [], True
        if not slot.done:
            self._run(batch)
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _run(self, batch):
        try:
            results, error = self._run_batch([s.item for s in batch]), None
        except BaseException as exc:  # handed to every caller of the batch, re-raised in each
            results, error = [None] * len(batch), exc
        with self._cond:
            for slot, result in zip(batch, results, strict=True):
                slot.result, slot.error, slot.done = result, error, True
            self._running = False
            self._cond.notify_all()
