#!/usr/bin/env bash
# The project's virtual environment (.venv, or $VENV) with the package and its test extras.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${VENV:-$root/.venv}"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "deps/python: $python is older than 3.11; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "    creating $venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
fi
stamp="$venv/.installed-$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "    pip install -e .[test] (a few minutes on a fresh machine)"
  "$venv/bin/pip" install -q -e "$root[test]"
  rm -f "$venv"/.installed-* && touch "$stamp"
fi
