"""Shared fixtures: factories for products, orders and staff users, signed notifications, the webhook
client, and a scripted fulfillment provider."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.db.models import Count
from django.test import Client

from fulfillment.models import MockLedgerEntry
from fulfillment.providers.base import FulfillmentParams, FulfillmentProvider, FulfillmentResult
from orders.models import Order, Product
from orders.services import ItemSpec, order_create, order_mark_paid
from orders.tbank import sign_notification

WEBHOOK_URL = "/api/payments/tbank/notification"


def let_time_pass(seconds: float = 61, **unit_filter) -> None:
    """As if `seconds` had passed since every provider request recorded for the units matching
    `unit_filter` (all units when empty), and make them due: their purchases and status checks
    are moved back in time. Digiflazz allows one request about a transaction per minute, and the
    delivery run refuses a check sooner than that, so a test that re-checks a unit lets a minute
    pass first (61 s by default)."""
    from datetime import timedelta

    from django.db.models import F
    from django.utils import timezone

    from fulfillment.models import Delivery, DeliveryAttempt

    ago = timedelta(seconds=seconds)
    units = Delivery.objects.filter(**unit_filter)
    DeliveryAttempt.objects.filter(delivery__in=units).update(started_at=F("started_at") - ago)
    units.filter(reference_sent_at__isnull=False).update(reference_sent_at=F("reference_sent_at") - ago)
    units.update(next_attempt_at=timezone.now() - timedelta(seconds=1))


@pytest.fixture
def product_factory(db) -> Callable[..., Product]:
    counter = iter(range(1, 10**6))

    def make(**overrides) -> Product:
        n = next(counter)
        values = {"name": f"Product {n}", "sku": f"sku{n}", "price_kopecks": 10000}
        values.update(overrides)
        return Product.objects.create(**values)

    return make


@pytest.fixture
def order_factory(product_factory) -> Callable[..., Order]:
    """order_factory(quantities=(1, 2), price=10000, recipient=...) -> a NEW order."""

    def make(*, quantities=(1,), price: int = 10000, recipient: str = "087800001230", email: str = "c@example.com"):
        items = [
            ItemSpec(product=product_factory(price_kopecks=price), recipient=recipient, quantity=q) for q in quantities
        ]
        return order_create(items=items, customer_email=email)

    return make


def notification(
    order: Order, *, status: str = "CONFIRMED", amount: int | None = None, password: str | None = None, **extra
) -> dict:
    payload = {
        "TerminalKey": settings.TBANK_TERMINAL_KEY,
        "OrderId": order.tbank_order_id,
        "Success": True,
        "Status": status,
        "PaymentId": 8742591,
        "ErrorCode": "0",
        "Amount": order.amount_kopecks if amount is None else amount,
        "CardId": 322264,
        "Pan": "430000******0777",
        "ExpDate": "1122",
    }
    payload.update(extra)
    return sign_notification(payload, password or settings.TBANK_PASSWORD)


@pytest.fixture
def post_notification(client: Client):
    def post(payload: dict | str | bytes):
        body = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
        return client.post(WEBHOOK_URL, data=body, content_type="application/json")

    return post


# --- orders in a given state ------------------------------------------------------------------


@pytest.fixture
def paid_order_factory(order_factory) -> Callable[..., Order]:
    """paid_order_factory(quantities=(1,), payment_id="8742591", ...) -> a PAID order whose units
    are WAITING: nothing is delivered, because on_commit callbacks (the delivery task) do not run
    in a non-transactional test unless captured."""

    def make(*, payment_id: str = "8742591", **kwargs) -> Order:
        order = order_factory(**kwargs)
        order_mark_paid(order_id=order.pk, payment_id=payment_id)
        order.refresh_from_db()
        return order

    return make


def delivered_per_unit() -> dict[str, int]:
    """How many times the Mock provider really delivered each unit (unit_key -> count)."""
    rows = MockLedgerEntry.objects.filter(outcome="delivered").values("unit_key").annotate(n=Count("id"))
    return {row["unit_key"]: row["n"] for row in rows}


@pytest.fixture
def queued_deliveries(monkeypatch) -> list[int]:
    """Record deliver_order.delay(order_id) calls instead of running the task."""
    from fulfillment.tasks import deliver_order

    calls: list[int] = []
    monkeypatch.setattr(deliver_order, "delay", lambda order_id: calls.append(order_id))
    return calls


# --- a scripted provider --------------------------------------------------------------------


class ScriptedProvider(FulfillmentProvider):
    """A deterministic provider for tests: answers come from a per-SKU script, every call is recorded.

    `script(sku, *steps)` queues answers for that SKU, consumed one per call (fulfill or
    check_status): a FulfillmentResult, an exception instance (raised), or a callable taking the
    params. With the script exhausted it delivers, serial "SER-<reference>".
    """

    name = "scripted"
    # The instance the registry hands out: the `scripted_provider` fixture sets it, so the test
    # and the code under test (via get_fulfillment_provider) share one script and one call log.
    instance: ScriptedProvider | None = None

    def __init__(self) -> None:
        self.scripts: dict[str, list] = {}
        self.calls: list[tuple[str, FulfillmentParams]] = []

    @classmethod
    def from_settings(cls) -> ScriptedProvider:
        return cls.instance or cls()

    def script(self, sku: str, *steps) -> None:
        self.scripts.setdefault(sku, []).extend(steps)

    def _answer(self, kind: str, params: FulfillmentParams) -> FulfillmentResult:
        self.calls.append((kind, params))
        steps = self.scripts.get(params.sku)
        step = steps.pop(0) if steps else FulfillmentResult.delivered(serial=f"SER-{params.reference}")
        if isinstance(step, BaseException):
            raise step
        return step(params) if callable(step) else step

    def fulfill(self, params: FulfillmentParams) -> FulfillmentResult:
        return self._answer("fulfill", params)

    def check_status(self, params: FulfillmentParams) -> FulfillmentResult:
        return self._answer("check", params)

    def calls_for(self, sku: str) -> list[tuple[str, str]]:
        """(kind, reference) of every call for `sku`, in order."""
        return [(kind, params.reference) for kind, params in self.calls if params.sku == sku]


@pytest.fixture
def scripted_provider(settings) -> ScriptedProvider:
    """Register ScriptedProvider as "scripted" and make it FULFILLMENT_PROVIDER."""
    provider = ScriptedProvider()
    ScriptedProvider.instance = provider
    settings.FULFILLMENT_PROVIDERS = {**settings.FULFILLMENT_PROVIDERS, "scripted": "tests.conftest.ScriptedProvider"}
    settings.FULFILLMENT_PROVIDER = "scripted"
    yield provider
    ScriptedProvider.instance = None


# --- staff users ------------------------------------------------------------------------------


@pytest.fixture
def staff_client_factory(db, django_user_model) -> Callable[..., Client]:
    """staff_client_factory("orders.view_order", ...) -> a Client logged in as a staff user
    (not a superuser) holding exactly those permissions ("app_label.codename")."""
    counter = iter(range(1, 10**6))

    def make(*perms: str) -> Client:
        user = django_user_model.objects.create_user(username=f"staff{next(counter)}", password="x", is_staff=True)
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        client = Client()
        client.force_login(user)
        return client

    return make


# --- a fake Digiflazz buyer API ---------------------------------------------------------------

DIGIFLAZZ_BASE_URL = "https://digiflazz.test/v1"
DIGIFLAZZ_USERNAME = "shopbuyer"
DIGIFLAZZ_API_KEY = "dev-key-7f3a9c-NEVER-SHOWN"
DIGIFLAZZ_WEBHOOK_SECRET = "hook-secret-51b2e0"
DIGIFLAZZ_CALLBACK_URL = "/api/fulfillment/digiflazz/callback"


class FakeDigiflazz:
    """The Digiflazz buyer API faked on top of `responses`, keeping its documented behaviour:

    * /transaction keeps transactions by ref_id: the same ref_id answers the stored transaction
      (that is the status check), a new one makes a purchase whose outcome comes from
      `outcomes[ref_id]` or `outcomes[customer_no]` (the documented development cases by
      default, else success);
    * a wrong signature or username answers rc 41 / 42 with HTTP 400, like Digiflazz's errors;
    * `interrupt_next("timeout" | "connection" | "502", reached=...)` breaks the next call, after
      creating the transaction when `reached` (the request got there, the answer was lost);
    * /cek-saldo answers `deposit`, /price-list answers `price_list` (or `price_list_error`);
    * `list_sku(code, price=..., stock=..., ...)` puts a SKU in the supplier's catalogue, with
      every price-list field: /price-list then answers the catalogue (unless `price_list` is set),
      and a new purchase of a listed SKU is refused as Digiflazz does: switched off (rc 43), out of
      stock (rc 68), inside its cut-off window in WIB (rc 58), a price above the request's
      `max_price` (rc 69); else it costs the listed price (answered as `price`) and uses one unit
      of limited stock. Change the catalogue between syncs with `list_sku` again.

    `calls` holds (path, parsed body) of every request, in order.
    """

    DOCUMENTED = {
        "087800001230": {"status": "Sukses", "rc": "00", "sn": "1234567890", "message": "Transaksi Sukses"},
        "087800001232": {"status": "Gagal", "rc": "02", "sn": "", "message": "Transaksi Gagal"},
        "087800001233": {"status": "Pending", "rc": "03", "sn": "", "message": "Transaksi Pending"},
        "087800001234": {"status": "Pending", "rc": "03", "sn": "", "message": "Transaksi Pending"},
    }

    def __init__(self, rsps, *, username: str = DIGIFLAZZ_USERNAME, api_key: str = DIGIFLAZZ_API_KEY) -> None:
        import responses

        self.username, self.api_key = username, api_key
        self.transactions: dict[str, dict] = {}
        self.outcomes: dict[str, dict] = {number: dict(answer) for number, answer in self.DOCUMENTED.items()}
        self.deposit = 990000
        self.price_list: list[dict] = []
        self.catalogue: dict[str, dict] = {}
        self.now = None  # the fake's clock for cut-off windows (default: the real time)
        self.price_list_error: dict | None = None
        self.calls: list[tuple[str, dict]] = []
        self._interruptions: list[tuple[str, bool]] = []
        for path, handler in (
            ("/transaction", self._transaction),
            ("/cek-saldo", self._balance),
            ("/price-list", self._price_list),
        ):
            rsps.add_callback(responses.POST, f"{DIGIFLAZZ_BASE_URL}{path}", callback=handler)

    # --- scripting -------------------------------------------------------------------------

    def answer(self, customer_no: str, *, status: str, rc: str, sn: str = "", message: str = "") -> None:
        """New purchases for `customer_no` (or with that ref_id) get this outcome."""
        self.outcomes[customer_no] = {"status": status, "rc": rc, "sn": sn, "message": message or f"{status} {rc}"}

    def list_sku(self, code: str, **fields) -> dict:
        """Put `code` in the catalogue (or change it): price, stock, unlimited_stock, seller_name,
        buyer/seller_product_status, start_cut_off / end_cut_off ("H:M" WIB), category, brand, ..."""
        item = self.catalogue.setdefault(
            code,
            {
                "product_name": f"Item {code}",
                "category": "Games",
                "brand": "MOBILE LEGENDS",
                "type": "Umum",
                "seller_name": "Seller A",
                "price": 10000,
                "buyer_sku_code": code,
                "buyer_product_status": True,
                "seller_product_status": True,
                "unlimited_stock": True,
                "stock": 0,
                "multi": True,
                "start_cut_off": "0:0",
                "end_cut_off": "0:0",
                "desc": "-",
            },
        )
        item.update(fields)
        return item

    def _refusal(self, body: dict) -> tuple[str, str] | None:
        """Why Digiflazz would refuse a new purchase of a listed SKU (rc, message); None: it sells."""
        from django.utils import timezone

        from fulfillment.supplier_catalog import in_cut_off

        item = self.catalogue.get(body.get("buyer_sku_code"))
        if item is None:
            return None
        if not (item["buyer_product_status"] and item["seller_product_status"]):
            return "43", "SKU tidak di temukan atau Non-Aktif"
        if not item["unlimited_stock"] and not item["stock"]:
            return "68", "Stok habis"
        start, end = (_wib(item["start_cut_off"]), _wib(item["end_cut_off"]))
        if in_cut_off(start=start, end=end, at=self.now or timezone.now()):
            return "58", "Sedang Cut Off"
        if body.get("max_price") is not None and item["price"] > int(body["max_price"]):
            return "69", "Harga seller lebih besar dari ketentuan harga Buy anda"
        return None

    def interrupt_next(self, kind: str, *, reached: bool = False) -> None:
        self._interruptions.append((kind, reached))

    def settle(self, ref_id: str, *, status: str, rc: str, sn: str = "", message: str = "") -> dict:
        """What happens at Digiflazz later (what a callback reports); returns the transaction."""
        self.transactions[ref_id].update(status=status, rc=rc, sn=sn, message=message or f"{status} {rc}")
        return dict(self.transactions[ref_id])

    @property
    def transaction_calls(self) -> list[dict]:
        return [body for path, body in self.calls if path == "/transaction"]

    # --- the API ---------------------------------------------------------------------------

    def _sign(self, suffix: str) -> str:
        import hashlib

        return hashlib.md5(f"{self.username}{self.api_key}{suffix}".encode()).hexdigest()

    @staticmethod
    def _reply(data, status: int = 200):
        return status, {"Content-Type": "application/json"}, json.dumps({"data": data})

    def _auth_error(self, body: dict, suffix: str):
        if body.get("username") != self.username:
            return self._reply({"rc": "42", "status": "Gagal", "message": "Buyer tidak ditemukan"}, 400)
        if body.get("sign") != self._sign(suffix):
            return self._reply({"rc": "41", "status": "Gagal", "message": "Signature Anda salah"}, 400)
        return None

    def _transaction(self, request):
        import requests

        body = json.loads(request.body)
        self.calls.append(("/transaction", body))
        interruption = self._interruptions.pop(0) if self._interruptions else None
        error = self._auth_error(body, str(body.get("ref_id")))
        if error:
            return error
        ref_id = body["ref_id"]
        if ref_id not in self.transactions and (interruption is None or interruption[1]):
            default = {"status": "Sukses", "rc": "00", "sn": f"SN-{ref_id}"}
            outcome = self.outcomes.get(ref_id) or self.outcomes.get(body["customer_no"], default)
            refusal = self._refusal(body)
            if refusal is not None:
                outcome = {"status": "Gagal", "rc": refusal[0], "sn": "", "message": refusal[1]}
            listed = self.catalogue.get(body["buyer_sku_code"])
            price = listed["price"] if listed else 10000
            if listed and outcome["status"] != "Gagal" and not listed["unlimited_stock"]:
                listed["stock"] -= 1
            self.transactions[ref_id] = {
                "ref_id": ref_id,
                "customer_no": body["customer_no"],
                "buyer_sku_code": body["buyer_sku_code"],
                "message": outcome.get("message", ""),
                "status": outcome["status"],
                "rc": outcome["rc"],
                "sn": outcome.get("sn", ""),
                # A failed transaction takes nothing from the deposit.
                "buyer_last_saldo": self.deposit - (0 if outcome["status"] == "Gagal" else price),
                "price": price,
                "tele": "@digiflazz",
                "wa": "081234512345",
            }
        if interruption is not None:
            kind = interruption[0]
            if kind == "timeout":
                return requests.exceptions.ReadTimeout("Read timed out. (read timeout=5)")
            if kind == "connection":
                return requests.exceptions.ConnectionError("Connection reset by peer")
            return int(kind), {"Content-Type": "text/html"}, "<html><body>Bad Gateway</body></html>"
        return self._reply(dict(self.transactions[ref_id]))

    def _balance(self, request):
        body = json.loads(request.body)
        self.calls.append(("/cek-saldo", body))
        return self._auth_error(body, "depo") or self._reply({"deposit": self.deposit})

    def _price_list(self, request):
        body = json.loads(request.body)
        self.calls.append(("/price-list", body))
        error = self._auth_error(body, "pricelist")
        if error:
            return error
        if self.price_list_error:
            return self._reply(self.price_list_error, 400)
        return self._reply(self.price_list or [dict(item) for item in self.catalogue.values()])


def _wib(value: str):
    from datetime import time

    hours, minutes = (int(part) for part in value.split(":"))
    return time(hours, minutes)


@pytest.fixture
def digiflazz_settings(settings):
    """FULFILLMENT_PROVIDER=digiflazz with test credentials, pointing at FakeDigiflazz's URL."""
    settings.FULFILLMENT_PROVIDER = "digiflazz"
    settings.DIGIFLAZZ_USERNAME = DIGIFLAZZ_USERNAME
    settings.DIGIFLAZZ_API_KEY = DIGIFLAZZ_API_KEY
    settings.DIGIFLAZZ_BASE_URL = DIGIFLAZZ_BASE_URL
    settings.DIGIFLAZZ_TESTING = True
    settings.DIGIFLAZZ_WEBHOOK_SECRET = DIGIFLAZZ_WEBHOOK_SECRET
    settings.DIGIFLAZZ_TIMEOUT_SECONDS = 5.0
    settings.DIGIFLAZZ_CALLBACK_URL = ""
    return settings


@pytest.fixture
def fake_digiflazz(digiflazz_settings, db) -> FakeDigiflazz:
    """A FakeDigiflazz answering every HTTP call (an unexpected URL fails the test)."""
    import responses

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeDigiflazz(rsps)


@pytest.fixture
def digiflazz_order(product_factory) -> Callable[..., Order]:
    """digiflazz_order(recipient=..., quantity=1, sku="xld10", max_price=None) -> a PAID order
    whose units are WAITING (the delivery task's on_commit does not run in these tests)."""

    from orders.services import order_mark_paid

    def make(*, recipient: str = "087800001230", quantity: int = 1, sku: str = "xld10", max_price=None) -> Order:
        product = Product.objects.filter(sku=sku).first() or product_factory(
            sku=sku, name=f"Product {sku}", max_provider_price=max_price
        )
        order = order_create(items=[ItemSpec(product=product, recipient=recipient, quantity=quantity)])
        order_mark_paid(order_id=order.pk, payment_id="8742591")
        order.refresh_from_db()
        return order

    return make


@pytest.fixture
def post_digiflazz_callback(client: Client):
    """post_digiflazz_callback(data_or_body, secret=DIGIFLAZZ_WEBHOOK_SECRET, signature=None, headers...)
    posts a callback signed like Digiflazz does (signature=... overrides; "" sends none)."""
    import hashlib
    import hmac

    def post(payload: dict | bytes, *, secret: str = DIGIFLAZZ_WEBHOOK_SECRET, signature: str | None = None):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        if signature is None:
            signature = "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
        headers = {"HTTP_X_DIGIFLAZZ_EVENT": "update", "HTTP_USER_AGENT": "Digiflazz-Hookshot"}
        if signature:
            headers["HTTP_X_HUB_SIGNATURE"] = signature
        return client.post(DIGIFLAZZ_CALLBACK_URL, data=body, content_type="application/json", **headers)

    return post


@pytest.fixture
def pending_unit(fake_digiflazz, digiflazz_order):
    """A unit whose purchase is pending at Digiflazz (documented case 087800001233)."""
    from fulfillment.models import Delivery, DeliveryStatus
    from fulfillment.services import fulfill_order

    order = digiflazz_order(recipient="087800001233")
    fulfill_order(order.pk)
    unit = Delivery.objects.get(order=order)
    assert unit.status == DeliveryStatus.PENDING
    return unit


def supplier_catalogue_sync(fake: FakeDigiflazz) -> None:
    """Keep what the fake supplier's catalogue says now, as a price-list sync does (SupplierSku)."""
    from django.utils import timezone

    from fulfillment.catalog import supplier_skus_apply

    supplier_skus_apply(listed={code: dict(item) for code, item in fake.catalogue.items()}, synced_at=timezone.now())


@pytest.fixture
def supplier(fake_digiflazz) -> FakeDigiflazz:
    """The fake Digiflazz with two sellers of the same item: `ml86` (Seller A) and `ml86b` (Seller B)."""
    fake_digiflazz.list_sku("ml86", price=20000, seller_name="Seller A")
    fake_digiflazz.list_sku("ml86b", price=20500, seller_name="Seller B")
    return fake_digiflazz


@pytest.fixture
def refused_for_price(supplier, product_factory, digiflazz_order):
    """(order, product): a product sold at a cost the supplier has since raised (21,000 -> 23,000
    IDR); its order's unit was refused for price (rc 69) and waits, the product paused for repricing."""
    from fulfillment.services import fulfill_order

    product = product_factory(sku="ml86", name="86 Diamonds", max_provider_price=21000)
    supplier.list_sku("ml86", price=23000)
    supplier_catalogue_sync(supplier)
    order = digiflazz_order(sku="ml86")
    fulfill_order(order.pk)
    return order, product
