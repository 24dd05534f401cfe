"""The monitors of a deployment over the key store: what :mod:`divqat.serving.app` calls per request.

Per request of a key: its monitors' states are read from the store, fed the request's rows
in order with the victim's own probabilities, and written back in one transaction; a monitor's
first alarm is recorded (monitor, action, the query it fired at and its statistic) and, with
``labels`` or ``block``, the action is put in force on the key. The request that raises the
alarm already gets the action. The client learns only the action, never which monitor fired.

Concurrency: requests of one key are serialised per server process (a lock per key), so
none of them is lost. Two worker processes (``--workers``) or replicas answering the same key
at the same moment each update the state they read, and the later write wins: the counts of
one of the two requests are then missing from the statistics (never from the key's budget).
"""
import threading
from collections import defaultdict

import numpy as np

from divqat.detection.codec import decode_state, encode_state

__all__ = ["Watch", "labels_only", "BLOCKED"]

#: the 403 a blocked key receives: the action, nothing about the monitors
BLOCKED = {"message": "this key is blocked", "reason": "blocked"}


def labels_only(probs):
    """One-hot float32 rows of the argmax of ``probs`` (the lowest index among ties, as label_only)."""
    out = np.zeros(np.shape(probs), np.float32)
    out[np.arange(len(out)), np.argmax(probs, axis=1)] = 1.0
    return out


class Watch:
    """``monitors`` (see :mod:`.registry`) over ``store`` (the key store contract), acting ``on_alarm``."""

    def __init__(self, store, monitors, on_alarm):
        self.store, self.monitors, self.on_alarm = store, monitors, on_alarm
        self._locks = defaultdict(threading.Lock)
        self._guard = threading.Lock()

    def _lock(self, key_id):
        with self._guard:
            return self._locks[key_id]

    def observe(self, key_id, x, probs):
        """Feed the key's monitors a batch; the action in force on the key afterwards."""
        with self._lock(key_id):
            saved = self.store.monitor_states(key_id)
            states = {m.name: decode_state(saved[m.name]) if m.name in saved else m.new_state()
                      for m in self.monitors}
            alarms = [alarm for m in self.monitors if (alarm := m.update(states[m.name], x, probs)) is not None]
            self.store.save_monitor_states(key_id, {name: encode_state(s) for name, s in states.items()})
            for alarm in alarms:
                self.store.record_alarm(key_id, alarm.monitor, self.on_alarm, alarm.detail)
            if alarms and self.on_alarm != "log" and self.store.key_action(key_id) is None:
                self.store.set_key_action(key_id, self.on_alarm)
        return self.store.key_action(key_id)
