"""API keys, their query budgets, rate limits and per-key monitor state: the key-store contract,
with two implementations: SQLite (:mod:`.keys_sqlite`, one file, the embedded default) and
PostgreSQL (:mod:`.keys_postgres`, one database shared by servers on many machines).

    store = open_key_store("keys.db")      # divqat.serving.key_stores; or "postgresql://user@host/db"
    token = store.add("alice", budget=10000, rate=20)
    charge = store.charge(token, rows)                       # counted before answered

A key is a random token (``dqk_`` + 32 bytes of ``secrets.token_urlsafe``); a store keeps only
its SHA-256 (a high-entropy random token needs no salt or slow hash: nothing short of guessing
256 bits inverts it). Each key has an integer id, a unique name, a budget (input rows it may ever
have answered), ``used`` (rows counted so far), an optional rate limit R (requests per second, a
token bucket of capacity max(1, R) refilled at R per second), a revoked flag and the action in
force after a monitor's alarm ("labels" or "block", or none).

Counting before answering: :meth:`KeyStore.charge` checks and adds the rows in one transaction
(refusing an unknown or revoked key, ``used + rows > budget`` and an empty bucket) and returns
only after it is committed, so the server answers only counted rows: with any number of
threads, processes and machines on one store, and across a kill -9, answered <= counted <=
budget. A CHECK constraint (used <= budget) makes each database refuse any other write.
"""
import abc
import hashlib
import re
import secrets
from dataclasses import dataclass

from divqat.checks import check_choice, check_int, check_real

__all__ = ["KeyStore", "Charge", "check_new_key", "check_action", "hash_token", "new_token", "refill",
           "TOKEN_PREFIX", "SYNCHRONOUS", "ACTIONS", "MAX_BUDGET", "POSTGRES_SCHEMES"]

TOKEN_PREFIX = "dqk_"
#: the largest budget both databases store (a signed 64-bit integer)
MAX_BUDGET = 2**63 - 1
#: durability of a count: FULL survives a power loss, NORMAL a crash of the server process
SYNCHRONOUS = ("FULL", "NORMAL")
#: what a key answers after an alarm: labels only, or nothing
ACTIONS = ("labels", "block")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def hash_token(token):
    """The stored form of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token():
    """A fresh random token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def refill(rate, tokens, refilled, now):
    """The tokens in a key's bucket at ``now``: ``tokens`` at time ``refilled`` plus ``rate`` per
    second since, capped at the capacity max(1, rate)."""
    return min(max(1.0, rate), tokens + max(0.0, now - refilled) * rate)


@dataclass(frozen=True)
class Charge:
    """The outcome of :meth:`KeyStore.charge`: ``status`` is "ok", "unauthorized", "budget" or "rate".

    ``key_id`` identifies the key in the store (for its monitor state and alarms; 0 for
    "unauthorized"); ``used``/``budget`` are the key's counts after the request; ``action`` is the
    action in force on the key ("labels", "block" or None); ``retry_after`` is the seconds until
    the rate limit admits a request ("rate" only).
    """
    status: str
    used: int = 0
    budget: int = 0
    key_id: int = 0
    action: str | None = None
    retry_after: float = 0.0

    @property
    def left(self):
        return self.budget - self.used


def check_new_key(name, budget, rate=None):
    """ValueError naming the argument unless they make a valid key."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"NAME must be 1-64 letters, digits or _.@- (starting with a letter or digit), got {name!r}")
    check_int("--budget", budget, low=0, high=MAX_BUDGET)
    check_real("--rate", rate, low=0, low_open=True, optional=True)


class KeyStore(abc.ABC):
    """The contract both stores keep. Every method is one transaction; every write is committed
    before the method returns."""

    @abc.abstractmethod
    def add(self, name, budget, rate=None):
        """Create key ``name`` with ``budget`` rows and an optional ``rate`` (requests/s); returns its token."""

    @abc.abstractmethod
    def revoke(self, name):
        """Revoke key ``name`` (ValueError if there is none); its count is kept."""

    @abc.abstractmethod
    def list(self):
        """Every key as a dict: id, name, used, budget, left, rate, revoked, action, created (oldest first)."""

    @abc.abstractmethod
    def usage(self, token):
        """``Charge`` of a zero-row request without touching the rate limit: the key's counts, or "unauthorized"."""

    @abc.abstractmethod
    def charge(self, token, rows):
        """Count ``rows`` (>= 1) against the key of ``token`` in one committed transaction, or refuse.

        Refusals change nothing: "unauthorized" (unknown or revoked token), "budget"
        (used + rows > budget), "rate" (the key's bucket is empty).
        """

    @abc.abstractmethod
    def monitor_states(self, key_id):
        """The saved state of every monitor of key ``key_id``: {monitor name: bytes}."""

    @abc.abstractmethod
    def save_monitor_states(self, key_id, states):
        """Insert or replace the states ({monitor name: bytes}) of key ``key_id``, in one transaction."""

    @abc.abstractmethod
    def record_alarm(self, key_id, monitor, action, detail):
        """Append an alarm of ``monitor`` on key ``key_id`` (timestamped by the store)."""

    @abc.abstractmethod
    def alarms(self, key_id):
        """The alarms of key ``key_id``, oldest first: dicts of monitor, action, detail, at (Unix seconds)."""

    @abc.abstractmethod
    def key_action(self, key_id):
        """The action in force on key ``key_id`` ("labels" or "block"), or None."""

    @abc.abstractmethod
    def set_key_action(self, key_id, action):
        """Put ``action`` ("labels", "block", or None to lift it) in force on key ``key_id``."""

    @abc.abstractmethod
    def close(self):
        """Release the store's connections."""


def check_action(action):
    """``action``, or ValueError unless it is one of :data:`ACTIONS` or None."""
    return action if action is None else check_choice("action", action, ACTIONS)
