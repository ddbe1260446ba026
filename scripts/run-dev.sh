#!/usr/bin/env bash
# Runs the web server and a Celery worker (with the embedded beat scheduler) together for
# development; Ctrl-C stops both. PORT=8001 make run serves on another port. The summary (admin
# link and password, how to buy something) comes last, once the server answers.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT="${PORT:-8000}"
case "$PORT" in
  ''|*[!0-9]*) echo "PORT must be a number, e.g. PORT=8001 make run (got '$PORT')." >&2; exit 2 ;;
esac
BASE="http://127.0.0.1:${PORT}"
# The bank's return links (and the sandbox's) point at the port actually served.
export PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-$BASE}"

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

$BIN/celery -A fulfillment_site worker --beat --loglevel INFO &
pids+=($!)
$BIN/python manage.py runserver "127.0.0.1:${PORT}" --noreload &
pids+=($!)

product_id=$($BIN/python manage.py shell -c "from orders.models import Product; p = Product.objects.filter(is_active=True, recipient_pattern='').order_by('id').first() or Product.objects.filter(is_active=True).order_by('id').first(); print(p.pk if p else '')" 2>/dev/null | tail -n1)
password_file="${VAR_DIR:-var}/admin-password.txt"
password="$(cat "$password_file" 2>/dev/null || echo 'see load_demo_data above')"

# Wait (at most 30 s) for the server to answer, so the summary is not scrolled away by its banner.
for _ in $(seq 1 60); do
  curl -s -o /dev/null "$BASE/admin/login/" 2>/dev/null && break
  sleep 0.5
done

cat <<SUMMARY

================================================================================
Admin:      $BASE/admin/   user 'admin', password: $password
            (kept across runs; new one: .venv/bin/python manage.py load_demo_data --reset-admin-password)
API docs:   $BASE/api/docs/   Catalogue: $BASE/api/products
Buy something as a customer (with TBANK_SANDBOX=true, open payment_url and press Pay):
  curl -s -X POST $BASE/api/orders -H 'Content-Type: application/json' -H "Idempotency-Key: \$(uuidgen 2>/dev/null || date +%s%N)" -d '{"email": "you@example.com", "items": [{"product": ${product_id:-1}, "quantity": 1, "recipient": "you@example.com"}]}'
Pay a demo order without the sandbox: .venv/bin/python manage.py simulate_payment ORDER_ID
Another port: PORT=8001 make run.  Stop: Ctrl-C.
================================================================================
SUMMARY
wait -n
