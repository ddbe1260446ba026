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
product_id=$($BIN/python manage.py shell -c "from orders.models import Product; p = Product.objects.filter(is_active=True, recipient_pattern='').order_by('id').first() or Product.objects.filter(is_active=True).order_by('id').first(); print(p.pk if p else '')" 2>/dev/null | tail -n1)
echo
echo "Buy something as a customer (with TBANK_SANDBOX=true, open payment_url and press Pay):"
echo "  curl -s -X POST http://127.0.0.1:8000/api/orders -H 'Content-Type: application/json' -H \"Idempotency-Key: \$(uuidgen 2>/dev/null || date +%s%N)\" -d '{\"email\": \"you@example.com\", \"items\": [{\"product\": ${product_id:-1}, \"quantity\": 1, \"recipient\": \"081234567890\"}]}'"
echo "API docs: http://127.0.0.1:8000/api/docs/  Catalogue: http://127.0.0.1:8000/api/products"
wait -n
