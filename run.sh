#!/usr/bin/env bash
# CityLine on this machine: `./run.sh` installs what is missing and starts the server;
# `./run.sh test` does the same set-up, then the lint, format and type checks and the whole
# test suite.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/scripts/setup.sh"
case "${1:-server}" in
  server) exec "$here/.venv/bin/cityline" run ;;
  test)   shift; "$here/scripts/lint.sh" && cd "$here" && exec "$here/.venv/bin/pytest" "$@" ;;
  *)      exec "$here/.venv/bin/cityline" "$@" ;;
esac
