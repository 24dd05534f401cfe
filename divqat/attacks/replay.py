"""Paid queries kept: every answer a victim gives an attack is recorded, saved in OUT/transfer.pt
(queries and answers), and replayed for free when the same attack runs again.

:class:`RecordingBlackBox` wraps the black box an attack queries. Its i-th ``query(x)`` is
answered from the record when the record's i-th call asked exactly these inputs (same sha256),
otherwise by the victim, and recorded. An attack run again with the same seed and options asks the
same queries in the same order, so after a failure (surrogate training, scoring, an interrupt)
a rerun pays for none of the queries already answered. The file also names the run that made
it (``key``: the attack's options, never an API key) and, once the attack has finished,
its ``record``: the surrogate beside it (OUT/surrogate.pt) is then complete and a rerun only
scores it.
"""
from pathlib import Path

from divqat.attacks.transfer import check_answers, tensor_hash
from divqat.utils import atomic_save, load_torch_file

__all__ = ["TRANSFER_NAME", "RecordingBlackBox", "load_transfer"]

TRANSFER_NAME = "transfer.pt"


def load_transfer(path, key, num_classes):
    """``(calls, record)`` of the transfer set ``path`` written for ``key`` (``([], None)`` when
    there is none): each call ``{"hash", "x", "answers"}``. ValueError naming the file when it
    holds another run's queries or damaged answers."""
    path = Path(path)
    if not path.exists():
        return [], None
    stored = load_torch_file(path, "transfer set")
    if not isinstance(stored, dict) or not isinstance(stored.get("calls"), list):
        raise ValueError(f"transfer set {path} is not one `divqat attack` wrote: pass --overwrite to discard it")
    if stored.get("key") != key:
        differ = sorted(k for k in set(key) | set(stored.get("key") or {})
                        if (stored.get("key") or {}).get(k) != key.get(k))
        raise ValueError(f"--out {path.parent} holds the paid answers of an attack with other options "
                         f"({', '.join(differ)}): rerun with the same options to reuse them, "
                         "or pass --overwrite to discard them")
    for call in stored["calls"]:
        check_answers(call.get("answers"), num_classes, f"transfer set {path}")
    return stored["calls"], stored.get("record")


class RecordingBlackBox:
    """``blackbox`` with its answers recorded and those of ``calls`` (a previous run's, from
    :func:`load_transfer`) replayed; the attack may spend ``budget`` answers in all.

    ``queries_used`` counts every answer the attack got (replayed or paid), ``fresh_queries`` the
    paid ones; every other attribute is ``blackbox``'s. ``keep_queries=False`` records each
    query's hash but not its images (``"x": None``): the millions of synthetic queries of a
    data-free attack would not fit in memory, and only its own generator could use them."""

    def __init__(self, blackbox, budget, calls=(), keep_queries=True):
        self.blackbox, self.budget, self.keep_queries = blackbox, budget, keep_queries
        self._replay, self.calls = list(calls), []
        self.queries_used = self.fresh_queries = 0

    def __getattr__(self, name):
        return getattr(self.blackbox, name)

    @property
    def _replayable(self):
        """The recorded calls not replayed yet (all of them, until the attack asks something else)."""
        return self._replay[len(self.calls):] if self._replay is not None else []

    @property
    def budget_left(self):
        left = self.budget - self.queries_used
        inner = self.blackbox.budget_left
        return left if inner is None else min(left, inner + sum(len(c["answers"]) for c in self._replayable))

    def query(self, x):
        digest = tensor_hash(x)
        pending = self._replayable
        if pending and pending[0]["hash"] == digest:
            answers = pending[0]["answers"]
        else:
            self._replay = None  # the attack went another way: nothing further can be replayed
            answers = self.blackbox.query(x).detach().cpu()
            self.fresh_queries += len(answers)
        self.calls.append({"hash": digest, "x": x.detach().cpu() if self.keep_queries else None, "answers": answers})
        self.queries_used += len(answers)
        return answers.clone()

    def save(self, path, key, record=None):
        """Write every answer this run and its predecessor paid for to ``path`` (atomically);
        returns how many."""
        calls = self.calls + self._replayable
        atomic_save({"key": key, "calls": calls, "record": record}, path)
        return sum(len(c["answers"]) for c in calls)
