#!/usr/bin/env bash
# A new master key for personal data (docs/personal-data.md) at $1, mode 0600, for docker compose.
# It never overwrites a key: the data sealed under the old one could not be read again.
set -euo pipefail
out=${1:?usage: scripts/master-key.sh FILE}
if [ -e "$out" ]; then echo "$out exists: a master key is never overwritten" >&2; exit 2; fi
mkdir -p "$(dirname "$out")"
umask 077
python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())' > "$out"
echo "master key written to $out"
