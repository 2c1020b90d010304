"""The tests' and benchmarks' PostgreSQL: the throw-away cluster ``scripts/services.sh`` starts (trust auth)."""

from __future__ import annotations

import os

#: where scripts/services.sh starts it (user postgres, no password)
HOST = os.environ.get("SHEETS_PG_HOST", "127.0.0.1")
PORT = int(os.environ.get("SHEETS_PG_PORT", "55432"))


def admin(sql: str) -> None:
    """Run one statement (``CREATE DATABASE``, ``DROP DATABASE``) outside a transaction, as ``postgres``."""
    import psycopg2

    conn = psycopg2.connect(host=HOST, port=PORT, user="postgres", dbname="postgres", connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def url(database: str) -> str:
    """The SQLAlchemy URL of ``database`` on that cluster (psycopg2)."""
    return f"postgresql+psycopg2://postgres@{HOST}:{PORT}/{database}"
