"""The index: patient / study / series / instance rows and the job queue, in SQL.

SQLite (WAL) by default through SQLAlchemy Core, so that a PostgreSQL URL works
unchanged when several boxes share one index.
"""
