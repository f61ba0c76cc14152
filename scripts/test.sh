#!/usr/bin/env bash
# Install streamsig with its test extras (and, where apt is available, the real
# Prometheus and headless Chromium the integration tests use), then run the suite.
# With CI=true a missing Prometheus or Chromium is an error here, and a test that
# skips for want of them (or of ../shared/data) fails the run (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
case "${CI:-}" in true | TRUE | True | 1 | yes) ci=1 ;; *) ci=0 ;; esac
"$PY" -m pip install -q -e ".[dev,lstm]"
if ! command -v prometheus >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get install -y -q prometheus chromium >/dev/null 2>&1 \
      || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q prometheus chromium >/dev/null) \
      || {
        if [ "$ci" = 1 ]; then
          echo "error: could not install prometheus/chromium (apt-get failed) and CI=true" >&2
          exit 1
        fi
        echo "note: could not install prometheus/chromium; their tests will skip" >&2
      }
  elif [ "$ci" = 1 ]; then
    echo "error: prometheus/chromium missing, no root apt-get to install them, and CI=true" >&2
    exit 1
  fi
fi
exec "$PY" -m pytest "$@"
