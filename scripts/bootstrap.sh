#!/usr/bin/env bash
# Create .venv and install Suqiu with its test tools (idempotent). Sourced by the other scripts.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SUQIU_VENV:-$root/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
stamp="$venv/.suqiu-installed"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e "$root[test]"
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
# The board's browser tests drive Debian's Chromium (a test tool's own browser download fails offline),
# with a CJK font so its screenshots show the Chinese labels.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y -q chromium fonts-wqy-microhei >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium fonts-wqy-microhei >/dev/null; }
  else sudo -n apt-get install -y -q chromium fonts-wqy-microhei >/dev/null 2>&1 || echo "install Debian's chromium for the board tests" >&2; fi
fi
