#!/usr/bin/env bash
# The test suite: ruff, then pytest on SQLite, then the integration tests again on PostgreSQL.
# With CI=true every optional part is required: a missing PostgreSQL or tool fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CI=${CI:-}

"$PY" -m ruff check .

"$PY" -m pytest -q "$@"

pg_up() { "$PY" -c "import psycopg2; psycopg2.connect(host='127.0.0.1', user='postgres', dbname='postgres', connect_timeout=3).close()" 2>/dev/null; }
if [ "$CI" = "true" ] || pg_up; then
    if ! pg_up; then
        echo "CI=true but PostgreSQL is not reachable on 127.0.0.1:5432 (user postgres)" >&2
        exit 1
    fi
    echo "== integration tests on PostgreSQL"
    SHEETS_TEST_DB=postgres "$PY" -m pytest -q -m integration "$@"
else
    echo "== PostgreSQL not reachable on 127.0.0.1:5432: the PostgreSQL pass is skipped (it runs when CI=true)"
fi
