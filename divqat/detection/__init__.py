"""Stateful detection of model extraction per API key, inside ``divqat serve`` (docs/guide/detection.md,
docs/science.md §11).

Monitors (one module each): PRADA's distance test (:mod:`.prada`), the CUSUM of unsure
answers (:mod:`.confidence`), the answered-class histogram test (:mod:`.classes`). Their
per-key state (:mod:`.codec`) lives in the key store; :mod:`.watch` runs them per request and
acts on an alarm; :mod:`.calibration` measures the victim on held-out in-distribution images.
"""
from divqat.detection.base import Alarm, Monitor
from divqat.detection.registry import ACTIONS, MONITORS, build_monitors, parse_monitors
from divqat.detection.watch import Watch

__all__ = ["Alarm", "Monitor", "ACTIONS", "MONITORS", "build_monitors", "parse_monitors", "Watch"]
