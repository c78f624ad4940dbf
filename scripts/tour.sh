#!/usr/bin/env bash
# Run the README's tour against a fresh demo server: every ```sh block under "## A tour", in order,
# as one bash script with -euo pipefail, so the first failing step fails the run (and CI).
#
# Everything lives in a temporary directory (the demo's data directory, the server log, the files the
# tour writes), removed at the end; the server is stopped. Usage: scripts/tour.sh [PYTHON_BIN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-.venv/bin}

work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

export MARKET_DATA_DIR="$work/var"
export TMPDIR="$work/tmp"   # the tour's own `mktemp -d` lands here too, removed with the rest
mkdir -p "$TMPDIR"
PORT=$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export PORT
unset MARKET_DATABASE_URL MARKET_CLOCK_START MARKET_STRIPE_API_KEY MARKET_STRIPE_API_BASE MARKET_STRIPE_WEBHOOK_SECRET

"$BIN/market" demo --keys-out "$MARKET_DATA_DIR/demo-keys.json"
"$BIN/market" serve --port "$PORT" >"$work/server.log" 2>&1 &
server=$!
# Up to 180 s: `market serve` starts one API process per core, and on a loaded machine that took 28 s.
for _ in $(seq 1 900); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; echo "tour: the server did not start" >&2; exit 1; }
  sleep 0.2
done
curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null || {
  tail -n 40 "$work/server.log"; echo "tour: the server did not answer /healthz within 180 s" >&2; exit 1; }

"$BIN/python" - README.md >"$work/tour.sh" <<'PY'
import re
import sys

text = open(sys.argv[1], encoding="utf-8").read()
tour = text.split("\n## A tour\n", 1)[1].split("\n## ", 1)[0]
blocks = re.findall(r"^```sh\n(.*?)^```$", tour, flags=re.S | re.M)
if not blocks:
    sys.exit("tour: no sh blocks under '## A tour' in README.md")
for number, block in enumerate(blocks, 1):
    print(f"echo '== tour step {number}/{len(blocks)}' >&2")
    print(block)
PY

if bash -euo pipefail "$work/tour.sh"; then
  echo "tour: every step passed" >&2
else
  status=$?
  echo "tour: a step failed (exit $status); server log:" >&2
  tail -n 40 "$work/server.log" >&2
  exit "$status"
fi
