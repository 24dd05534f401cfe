"""Opening a key store by where it is (``--db``): a ``postgresql://`` URL opens the
PostgreSQL store (:mod:`divqat.serving.keys_postgres`, which needs the ``postgres`` extra), any
other value the SQLite file at that path (:mod:`divqat.serving.keys_sqlite`). The contract both
keep is :class:`divqat.serving.keys.KeyStore`."""
from divqat.checks import check_choice
from divqat.serving.keys import POSTGRES_SCHEMES, SYNCHRONOUS

__all__ = ["open_key_store"]


def open_key_store(db, create=False, synchronous="FULL"):
    """The key store at ``db``: a ``postgresql://`` URL, else the path of a SQLite file.
    ``create=True`` makes the tables (and the SQLite file) if absent; without it a store that
    does not exist is an error naming ``--db``. ``synchronous``: one of :data:`SYNCHRONOUS`."""
    synchronous = check_choice("synchronous", synchronous, SYNCHRONOUS)
    if str(db).startswith(POSTGRES_SCHEMES):
        from divqat.serving.keys_postgres import PostgresKeyStore

        return PostgresKeyStore(str(db), create=create, synchronous=synchronous)
    from divqat.serving.keys_sqlite import SqliteKeyStore  # imported on use, as the PostgreSQL one

    return SqliteKeyStore(db, create=create, synchronous=synchronous)
