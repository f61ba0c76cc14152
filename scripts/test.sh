#!/usr/bin/env bash
# Install streamsig with its test extras (and, where apt is available, the real
# Prometheus and headless Chromium the integration tests use), then run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install -q -e ".[dev,lstm]"
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  if ! command -v prometheus >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    apt-get install -y -q prometheus chromium >/dev/null 2>&1 \
      || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q prometheus chromium >/dev/null) \
      || echo "note: could not install prometheus/chromium; their tests will skip (the browser test fails under CI=true)" >&2
  fi
fi
exec "$PY" -m pytest "$@"
