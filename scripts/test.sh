#!/usr/bin/env bash
# The tests: install, lint, type-check the core, then pytest (it starts its own broker and PostgreSQL).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$root"
ruff check .
mypy
exec python -m pytest -p no:cacheprovider "$@"
