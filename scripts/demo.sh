#!/usr/bin/env bash
# The main job: install, then the embedded stack with the demo scenario. Ctrl-C stops it all.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$root"
exec suqiu up --demo "$@"
