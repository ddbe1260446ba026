#!/usr/bin/env bash
# Runs the web server and a Celery worker (with the embedded beat scheduler) together for
# development; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

$BIN/celery -A fulfillment_site worker --beat --loglevel INFO &
pids+=($!)
$BIN/python manage.py runserver 127.0.0.1:8000 --noreload &
pids+=($!)

echo "Admin: http://127.0.0.1:8000/admin/  (user 'admin', password printed above)"
echo "Pay a demo order: .venv/bin/python manage.py simulate_payment ORDER_ID"
wait -n
