#!/usr/bin/env bash
# The packaging check: build the sdist and the wheel (no warning allowed), install the wheel (not
# the checkout) into a fresh virtualenv, and see Airflow list the provider and the CLI run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
work=$(mktemp -d -t sheets-package-XXXXXX)
trap 'rm -rf "$work"' EXIT

# byte-compiling off in the environment makes setuptools warn; it says nothing about the package
if ! env -u PYTHONDONTWRITEBYTECODE "$PY" -m build --sdist --wheel --outdir "$work/dist" . >"$work/build.log" 2>&1; then
    cat "$work/build.log" >&2
    echo "packaging: the build failed" >&2
    exit 1
fi
if grep -iE "warning|deprecat" "$work/build.log" >&2; then
    echo "packaging: the build warned (lines above)" >&2
    exit 1
fi
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check "$work"/dist/*.whl
AIRFLOW_HOME="$work/home" "$work/venv/bin/airflow" providers list | grep -E "^airflow-provider-sheets " \
    || { echo "packaging: 'airflow providers list' does not show airflow-provider-sheets" >&2; exit 1; }
"$work/venv/bin/sheets-to-kafka" --help >/dev/null \
    || { echo "packaging: the installed sheets-to-kafka command does not run" >&2; exit 1; }
echo "== packaging: sdist and wheel built without warnings; the installed wheel is listed by Airflow and its CLI runs"
