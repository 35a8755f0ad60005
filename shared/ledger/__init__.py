"""The ledger: one lasting row per generation (the request log), with its cost in dollars.

Workers append a :class:`~shared.ledger.record.LedgerRecord` to a bounded Redis stream as each
generation ends; the recorder (:mod:`shared.ledger.recorder`) drains it into a SQL database (SQLite by
default, PostgreSQL when configured), and :class:`~shared.ledger.queries.LedgerQueries` reads it back for
the admin API and the console. Nothing here is on the request's hot path.

The package re-exports nothing: a worker imports the record and the prices only, and must not pay for
importing SQLAlchemy, which the API and the recorder need.
"""

__all__ = ()
