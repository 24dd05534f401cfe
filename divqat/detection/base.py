"""What every monitor of :mod:`divqat.detection` is: a statistic over one key's query stream,
updated row by row (in the order the server answered them), with a threshold that raises an
alarm once. Its state is a dict of numpy arrays (:mod:`.codec`), kept in the key store."""
from dataclasses import dataclass

import numpy as np

__all__ = ["Alarm", "Monitor"]


@dataclass(frozen=True)
class Alarm:
    """A monitor's first threshold crossing: at the key's ``query``-th query (1-based), with the
    value of its ``statistic``."""
    monitor: str
    query: int
    statistic: float

    @property
    def detail(self):
        return f"query {self.query}: statistic {self.statistic:.6g}"


class Monitor:
    """Base class: ``name``, ``new_state()`` and ``observe(state, x, probs)``; :meth:`update`
    feeds a batch. ``state["n"]`` counts the key's queries and ``state["alarmed"]`` is set at the
    first alarm, after which the statistic is no longer computed."""

    name = ""

    def new_state(self):
        return {"n": np.int64(0), "alarmed": np.bool_(False), **self._initial()}

    def _initial(self):
        raise NotImplementedError

    def observe(self, state, x, probs):
        """Take one query (``x`` the flattened float input, ``probs`` the victim's probabilities);
        return the statistic when it crosses the threshold, else None. ``state["n"]`` already
        counts this query."""
        raise NotImplementedError

    def update(self, state, x, probs):
        """Feed a batch (rows of ``x`` (N, ...) and ``probs`` (N, C)); the first :class:`Alarm` or None."""
        flat = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
        alarm = None
        for row in range(len(flat)):
            state["n"] = np.int64(state["n"] + 1)
            if alarm is None and not bool(state["alarmed"]):
                statistic = self.observe(state, flat[row], probs[row])
                if statistic is not None:
                    state["alarmed"] = np.bool_(True)
                    alarm = Alarm(self.name, int(state["n"]), float(statistic))
        return alarm
