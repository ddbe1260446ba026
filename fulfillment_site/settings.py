"""Settings for the fulfillment service.

Every value comes from the environment or a `.env` file (see `.env.example`), read through
django-environ. The defaults run on a laptop with nothing installed: SQLite and an embedded
Celery broker on the filesystem under `var/`. Production points `DATABASE_URL` at PostgreSQL
and `CELERY_BROKER_URL` at Redis or RabbitMQ; no code changes.
"""

from decimal import Decimal
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from fulfillment_site.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
env_file = BASE_DIR / ".env"
# The test suite sets DJANGO_IGNORE_DOTENV: a developer's .env (written by `make run`, with the
# sandbox bank on) must not change what `make test` checks.
if env_file.exists() and not env.bool("DJANGO_IGNORE_DOTENV", default=False):
    env.read_env(str(env_file))

VAR_DIR = Path(env("VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DJANGO_DEBUG", default=False)
# A random key is only acceptable in development; production must set its own.
SECRET_KEY = env("DJANGO_SECRET_KEY", default="") or ("dev-only-insecure-key" if DEBUG else "")
if not SECRET_KEY:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set. Set it in the environment or .env "
        "(or set DJANGO_DEBUG=true for local development)."
    )
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# --- HTTPS ------------------------------------------------------------------------------------
# One switch for a site served over HTTPS behind a TLS-terminating proxy: redirect plain HTTP,
# cookies only over HTTPS, HSTS for a year (subdomains and preload included), and the proxy's
# X-Forwarded-Proto trusted to say a request came in over HTTPS. Each value has its own variable.
HTTPS = env.bool("DJANGO_HTTPS", default=False)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=HTTPS)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=HTTPS)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=HTTPS)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=HTTPS)


def _proxy_ssl_header(value: str) -> tuple[str, str] | None:
    """ "X-Forwarded-Proto=https" -> ("HTTP_X_FORWARDED_PROTO", "https"); empty -> None."""
    if not value.strip():
        return None
    header, sep, expected = value.partition("=")
    if not sep or not header.strip() or not expected.strip():
        raise ImproperlyConfigured(
            f"DJANGO_SECURE_PROXY_SSL_HEADER must look like X-Forwarded-Proto=https (or be empty), not {value!r}."
        )
    name = header.strip().upper().replace("-", "_")
    return (name if name.startswith("HTTP_") else f"HTTP_{name}", expected.strip())


# Only behind a proxy that sets (and overwrites) this header: a client could otherwise claim HTTPS.
SECURE_PROXY_SSL_HEADER = _proxy_ssl_header(
    env("DJANGO_SECURE_PROXY_SSL_HEADER", default="X-Forwarded-Proto=https" if HTTPS else "")
)
# Checks to silence (ids, comma separated), e.g. security.W021 when HSTS preload is turned off on purpose.
SILENCED_SYSTEM_CHECKS = env.list("DJANGO_SILENCED_SYSTEM_CHECKS", default=[])

INSTALLED_APPS = [
    # Before the admin so its templates (dashboard, banner, order page) override the admin's.
    "fulfillment_site.console.apps.ConsoleConfig",
    "fulfillment_site.console.apps.StaffAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "orders.apps.OrdersConfig",
    "fulfillment.apps.FulfillmentConfig",
]

MIDDLEWARE = [
    # /healthz and /readyz, answered before the HTTPS redirect and the host check (load balancers
    # probe a backend by its address, over plain HTTP).
    "fulfillment_site.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves collected static files (the admin's styles) from the WSGI process itself.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Customer pages and emails speak the visitor's language (Accept-Language), else LANGUAGE_CODE.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "fulfillment_site.urls"
# Variables marked with sensitive_variables stay hidden on error pages even with DEBUG on.
DEFAULT_EXCEPTION_REPORTER_FILTER = "fulfillment_site.error_reports.AlwaysSafeExceptionReporterFilter"
WSGI_APPLICATION = "fulfillment_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            # {{ amount|money }} and {{ when|moment }} in every template: one way to write money and times.
            "builtins": ["fulfillment_site.templatetags.display"],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # WAL lets the web process read while a worker writes; IMMEDIATE takes the write lock at
    # BEGIN so two writers queue on the busy timeout instead of failing mid-transaction.
    _db.setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # Three covering indexes (INCLUDE columns) serve PostgreSQL's admin lists at millions of
    # orders; SQLite builds them without the extra columns, which is right for a laptop, so its
    # warning about it is noise on every `make run` and migrate.
    if "models.W040" not in SILENCED_SYSTEM_CHECKS:
        SILENCED_SYSTEM_CHECKS.append("models.W040")
elif _db["ENGINE"] == "django.db.backends.postgresql":
    # Workers keep hundreds of slow provider calls in flight on threads; a pool lets them
    # share a few connections instead of holding one each for the length of a call.
    if env.bool("DATABASE_POOL", default=True):
        _db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=2),
            "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=20),
            "timeout": env.int("DATABASE_POOL_TIMEOUT", default=30),
        }
        _db["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# The shop is Russian: pages, emails and the admin speak Russian unless the visitor's browser (or
# the language switch in the admin's header) asks for English.
LANGUAGE_CODE = env("LANGUAGE_CODE", default="ru")
LANGUAGES = [("ru", "Русский"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Every time shown to staff and customers is in this zone, and says so (Moscow time: MSK).
TIME_ZONE = env("TIME_ZONE", default="Europe/Moscow")
USE_I18N = True
USE_TZ = True

# Dates in the admin: ISO, every time with seconds (console/formats/en/formats.py).
FORMAT_MODULE_PATH = ["fulfillment_site.console.formats"]

STATIC_URL = "static/"
# `manage.py collectstatic` fills it; WhiteNoise serves it (compressed copies included).
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Benchmarks only (bench/run.py): routes bench/floor, an unauthenticated endpoint that inserts a
# row for every request. Never enable it on a server that anyone else can reach.
BENCHMARK_FLOOR_ENDPOINT = env.bool("BENCHMARK_FLOOR_ENDPOINT", default=False)

# --- Cache (API throttling counters) ------------------------------------------------------------
# The default is per process; with several web processes use a shared one (redis://HOST:6379/1)
# so the order throttle counts every request of a client address.
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "orders.api.schema.CustomerAPISchema",
    # Proxies in front of the site that append to X-Forwarded-For; 0 = the client address is REMOTE_ADDR.
    "NUM_PROXIES": env.int("API_NUM_PROXIES", default=0),
    "DEFAULT_THROTTLE_RATES": {"order_create": env("ORDER_CREATE_THROTTLE_RATE", default="20/min")},
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Digital goods shop API",
    "DESCRIPTION": "Catalogue, order creation with a T-Bank payment link, and the customer's order status.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI's files are served from our own static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Both answers that carry an order's status use the one list of statuses.
    "ENUM_NAME_OVERRIDES": {"OrderStatusEnum": "orders.api.serializers.ORDER_STATUSES"},
    # The enum components (the default hook), then the links between operations (orders.api.schema).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "orders.api.schema.add_links",
    ],
}

# --- Customer checkout ------------------------------------------------------------------------
# The public https origin of this site: T-Bank's NotificationURL and the customer's links are built on it.
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Most units (sum of quantities) one order may hold.
ORDER_MAX_UNITS = env.int("ORDER_MAX_UNITS", default=20)
# The customer's status page reloads itself this often while the order is not final.
STATUS_PAGE_REFRESH_SECONDS = env.int("STATUS_PAGE_REFRESH_SECONDS", default=5)
# Threads of each web process (gunicorn.conf.py reads the same variable and, started by it, sets
# it to the value in use); how many of them checkouts may hold, most of them waiting on the bank
# (the rest always answer the webhook and everything else); and how many checkouts run code at
# once rather than wait (orders/capacity.py).
GUNICORN_THREADS = env.int("GUNICORN_THREADS", default=32)
# How long a storefront (or a proxy) may reuse an answer of GET /api/products, /api/categories and
# /api/brands without asking again; it can always revalidate with If-None-Match (ETag).
CATALOGUE_CACHE_SECONDS = env.int("CATALOGUE_CACHE_SECONDS", default=60)
CHECKOUT_MAX_IN_FLIGHT = env.int("CHECKOUT_MAX_IN_FLIGHT", default=max(1, GUNICORN_THREADS * 3 // 4))
CHECKOUT_MAX_WORKING = env.int("CHECKOUT_MAX_WORKING", default=1)

# --- Email to customers -------------------------------------------------------------------------
# consolemail:// (development: printed by the worker), smtp://USER:PASSWORD@HOST:587/?tls=True,
# smtp+ssl://..., filemail:///path/to/folder.
EMAIL_URL = env("EMAIL_URL", default="consolemail://")
globals().update(env.email_url_config(EMAIL_URL))
if EMAIL_URL.startswith("filemail://"):
    # django-environ drops the leading slash of filemail:///abs/path; keep the path as written.
    EMAIL_FILE_PATH = EMAIL_URL[len("filemail://") :] or str(VAR_DIR / "mail")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="shop@localhost")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
# Attempts per email before it is marked failed; the wait doubles from EMAIL_RETRY_BASE_SECONDS.
EMAIL_MAX_ATTEMPTS = env.int("EMAIL_MAX_ATTEMPTS", default=8)
EMAIL_RETRY_BASE_SECONDS = env.int("EMAIL_RETRY_BASE_SECONDS", default=60)
# The sweep re-queues an unsent email whose task was queued longer ago than this.
EMAIL_SWEEP_INTERVAL_SECONDS = env.int("EMAIL_SWEEP_INTERVAL_SECONDS", default=300)
EMAIL_STALE_AFTER_SECONDS = env.int("EMAIL_STALE_AFTER_SECONDS", default=900)
# Bodies above this size are refused (413) by the webhook and callback endpoints before they
# are read; real notifications and callbacks are a few KB.
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=256 * 1024)

# --- T-Bank internet acquiring ----------------------------------------------------------------
TBANK_TERMINAL_KEY = env("TBANK_TERMINAL_KEY", default="")
TBANK_PASSWORD = env("TBANK_PASSWORD", default="")
# Optional allow-list of source networks (CIDR). Empty means any source; the token is what
# authenticates a notification, the list is defence in depth.
TBANK_ALLOWED_NETWORKS = env.list("TBANK_ALLOWED_NETWORKS", default=[])
TBANK_TRUST_X_FORWARDED_FOR = env.bool("TBANK_TRUST_X_FORWARDED_FOR", default=False)
# Base URL of the acquiring API the shop calls (Init, GetState, CheckOrder, Cancel).
TBANK_API_URL = env("TBANK_API_URL", default="https://securepay.tinkoff.ru/v2/")
# Seconds to wait for the bank's answer; past it the outcome is unknown and is checked before any repeat.
TBANK_TIMEOUT_SECONDS = env.float("TBANK_TIMEOUT_SECONDS", default=15.0)
# An Init whose answer was lost is judged (CheckOrder) only once it is this old, so the bank has
# registered it: asked sooner, CheckOrder could miss it and a second live payment link be made.
TBANK_INIT_SETTLE_SECONDS = env.float("TBANK_INIT_SETTLE_SECONDS", default=60.0)
if TBANK_INIT_SETTLE_SECONDS < TBANK_TIMEOUT_SECONDS:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"TBANK_INIT_SETTLE_SECONDS ({TBANK_INIT_SETTLE_SECONDS:g}) must be at least TBANK_TIMEOUT_SECONDS "
        f"({TBANK_TIMEOUT_SECONDS:g}): an Init still waiting for its answer must not be judged by CheckOrder."
    )
# How long the payment link lives (Init RedirectDueDate); the bank then expires the payment.
TBANK_PAYMENT_TTL_MINUTES = env.int("TBANK_PAYMENT_TTL_MINUTES", default=60)
# 54-FZ receipt in Init. Off for a terminal without an online kassa.
TBANK_RECEIPT_ENABLED = env.bool("TBANK_RECEIPT_ENABLED", default=True)
TBANK_RECEIPT_TAXATION = env("TBANK_RECEIPT_TAXATION", default="usn_income")
TBANK_RECEIPT_TAX = env("TBANK_RECEIPT_TAX", default="none")
TBANK_RECEIPT_PAYMENT_METHOD = env("TBANK_RECEIPT_PAYMENT_METHOD", default="full_prepayment")
TBANK_RECEIPT_PAYMENT_OBJECT = env("TBANK_RECEIPT_PAYMENT_OBJECT", default="service")
# Development only (refused unless DJANGO_DEBUG): T-Bank is answered by a local sandbox with a pay page.
TBANK_SANDBOX = env.bool("TBANK_SANDBOX", default=False)
# GetState polling of NEW orders whose notification never came: a payment is asked once it is
# PAYMENT_POLL_AFTER_SECONDS old, then at most every PAYMENT_POLL_EVERY_SECONDS; each run asks
# at most PAYMENT_POLL_BATCH payments and runs every PAYMENT_POLL_INTERVAL_SECONDS.
PAYMENT_POLL_AFTER_SECONDS = env.int("PAYMENT_POLL_AFTER_SECONDS", default=300)
PAYMENT_POLL_EVERY_SECONDS = env.int("PAYMENT_POLL_EVERY_SECONDS", default=300)
PAYMENT_POLL_BATCH = env.int("PAYMENT_POLL_BATCH", default=50)
PAYMENT_POLL_INTERVAL_SECONDS = env.int("PAYMENT_POLL_INTERVAL_SECONDS", default=60)

# --- Refunds ----------------------------------------------------------------------------------
# auto: units that cannot be delivered are refunded by the service once nothing of the order is
# still in progress; staff: nothing is sent until staff run "Refund undelivered units".
REFUND_POLICY = env("REFUND_POLICY", default="auto")
# How long a worker may hold a refund it is sending before it is considered dead (its Cancel is
# then checked with GetState before any repeat). Longer than TBANK_TIMEOUT_SECONDS.
REFUND_CLAIM_SECONDS = env.int("REFUND_CLAIM_SECONDS", default=120)
# Wait between two GetState checks of a refund whose outcome is unknown.
REFUND_CHECK_INTERVAL_SECONDS = env.int("REFUND_CHECK_INTERVAL_SECONDS", default=60)
# A refund the bank refused after an earlier Cancel of it may have gone through (a worker killed
# mid-call) is asked about again with GetState this often, so a refund the bank did make is
# recorded without waiting for staff.
REFUND_FAILED_RECHECK_SECONDS = env.int("REFUND_FAILED_RECHECK_SECONDS", default=900)

# Raw bodies above this size are stored truncated (audit records must not grow unbounded).
PAYMENT_NOTIFICATION_MAX_STORED_BYTES = env.int("PAYMENT_NOTIFICATION_MAX_STORED_BYTES", default=16384)

# --- Fulfillment providers --------------------------------------------------------------------
# name -> dotted path of a FulfillmentProvider subclass. Extra providers can be registered
# without code changes with FULFILLMENT_EXTRA_PROVIDERS="name=package.module.Class,...".
FULFILLMENT_PROVIDERS = {
    "mock": "fulfillment.providers.mock.MockProvider",
    "digiflazz": "fulfillment.providers.digiflazz.DigiflazzProvider",
}
FULFILLMENT_PROVIDERS.update(env.dict("FULFILLMENT_EXTRA_PROVIDERS", default={}))
FULFILLMENT_PROVIDER = env("FULFILLMENT_PROVIDER", default="mock")

# Delivery policy (see docs/architecture.md).
FULFILLMENT_MAX_PURCHASE_ATTEMPTS = env.int("FULFILLMENT_MAX_PURCHASE_ATTEMPTS", default=5)
# How many supplier SKUs one delivery run tries for a unit refused for a product fault
# (the product's own SKU, then its backup SKUs).
FULFILLMENT_MAX_ROUTES = env.int("FULFILLMENT_MAX_ROUTES", default=5)
FULFILLMENT_RETRY_BASE_SECONDS = env.float("FULFILLMENT_RETRY_BASE_SECONDS", default=30.0)
FULFILLMENT_RETRY_MAX_SECONDS = env.float("FULFILLMENT_RETRY_MAX_SECONDS", default=3600.0)
FULFILLMENT_CLAIM_SECONDS = env.int("FULFILLMENT_CLAIM_SECONDS", default=300)
FULFILLMENT_STALE_AFTER_SECONDS = env.int("FULFILLMENT_STALE_AFTER_SECONDS", default=300)
FULFILLMENT_RECONCILE_INTERVAL_SECONDS = env.int("FULFILLMENT_RECONCILE_INTERVAL_SECONDS", default=15)
# Faults that are not a unit's (docs/architecture.md, "Faults"): how often the provider's account
# is checked (balance; lifts a halt once the fault is gone; 0 turns the periodic check off), and
# the wait before a probe purchase tests a halt or pause again (doubling up to the maximum).
FULFILLMENT_ACCOUNT_CHECK_INTERVAL_SECONDS = env.int("FULFILLMENT_ACCOUNT_CHECK_INTERVAL_SECONDS", default=60)
FULFILLMENT_FAULT_PROBE_SECONDS = env.float("FULFILLMENT_FAULT_PROBE_SECONDS", default=300.0)
FULFILLMENT_FAULT_PROBE_MAX_SECONDS = env.float("FULFILLMENT_FAULT_PROBE_MAX_SECONDS", default=3600.0)

# --- Orders -----------------------------------------------------------------------------------
# Most units one order may hold (all its items together). Units are created when the bank's
# payment notification arrives, inside its 10 s answer window.
ORDER_MAX_UNITS = env.int("ORDER_MAX_UNITS", default=20)

# Mock provider: simulates a real provider's latency and failure rate.
MOCK_FULFILLMENT_DELAY_MIN = env.float("MOCK_FULFILLMENT_DELAY_MIN", default=1.0)
MOCK_FULFILLMENT_DELAY_MAX = env.float("MOCK_FULFILLMENT_DELAY_MAX", default=3.0)
MOCK_FULFILLMENT_SUCCESS_RATE = env.float("MOCK_FULFILLMENT_SUCCESS_RATE", default=0.95)
MOCK_FULFILLMENT_PENDING_RATE = env.float("MOCK_FULFILLMENT_PENDING_RATE", default=0.0)
MOCK_FULFILLMENT_SEED = env.int("MOCK_FULFILLMENT_SEED", default=None)
# Recipients the Mock refuses permanently (an undeliverable unit, for tests and demos); an entry
# ending in "*" is a prefix: "FAIL-*" refuses every recipient starting with FAIL-.
MOCK_FULFILLMENT_FAIL_RECIPIENTS = env.list("MOCK_FULFILLMENT_FAIL_RECIPIENTS", default=[])
# Simulated faults that are not a unit's: "deposit" or "credentials" halts the Mock for the whole
# shop; the SKUs listed are out of stock (their deliveries pause).
MOCK_FULFILLMENT_SHOP_FAULT = env("MOCK_FULFILLMENT_SHOP_FAULT", default="")
MOCK_FULFILLMENT_OUT_OF_STOCK_SKUS = env.list("MOCK_FULFILLMENT_OUT_OF_STOCK_SKUS", default=[])

# Digiflazz buyer API.
DIGIFLAZZ_USERNAME = env("DIGIFLAZZ_USERNAME", default="")
DIGIFLAZZ_API_KEY = env("DIGIFLAZZ_API_KEY", default="")
DIGIFLAZZ_BASE_URL = env("DIGIFLAZZ_BASE_URL", default="https://api.digiflazz.com/v1")
DIGIFLAZZ_TESTING = env.bool("DIGIFLAZZ_TESTING", default=False)
DIGIFLAZZ_WEBHOOK_SECRET = env("DIGIFLAZZ_WEBHOOK_SECRET", default="")
DIGIFLAZZ_TIMEOUT_SECONDS = env.float("DIGIFLAZZ_TIMEOUT_SECONDS", default=30.0)
DIGIFLAZZ_CALLBACK_URL = env("DIGIFLAZZ_CALLBACK_URL", default="")
# The beat pulls the prepaid price list this often while Digiflazz is configured, so stock,
# cut-off windows and prices (and the repricing they trigger) follow the supplier; 0: only
# `manage.py sync_digiflazz_products`. Digiflazz allows the whole list once per 5 minutes.
DIGIFLAZZ_SYNC_INTERVAL_SECONDS = env.int("DIGIFLAZZ_SYNC_INTERVAL_SECONDS", default=900)

# --- Pricing (docs/pricing.md) ---------------------------------------------------------------
# Shop price = rounded(supplier cost in rupiah x roubles per rupiah x (1 + markup) + addition),
# never below cost + minimum margin, by the most specific price rule. The rate is the Central
# Bank of Russia's daily one, fetched every PRICING_RATE_REFRESH_SECONDS; PRICING_FIXED_RATE
# (roubles per rupiah, e.g. 0.0055) replaces it. A rate set more than PRICING_MAX_RATE_AGE_DAYS
# ago is not used: prices stay as they are until a fresh one arrives.
PRICING_FIXED_RATE = env("PRICING_FIXED_RATE", default="")
PRICING_MAX_RATE_AGE_DAYS = env.int("PRICING_MAX_RATE_AGE_DAYS", default=3)
# New SKUs from a price-list sync that a rule prices go on sale by themselves (true), or wait
# for staff to activate them (false).
SYNC_AUTO_ACTIVATE = env.bool("SYNC_AUTO_ACTIVATE", default=False)
# A purchase may cost at most the supplier cost its sale was priced from plus this much (sent to
# Digiflazz as max_price); a dearer seller is refused, never bought at a loss.
PRICING_COST_TOLERANCE_PERCENT = env.float("PRICING_COST_TOLERANCE_PERCENT", default=2.0)
PRICING_RATE_REFRESH_SECONDS = env.int("PRICING_RATE_REFRESH_SECONDS", default=3600)
CBR_DAILY_URL = env("CBR_DAILY_URL", default="https://www.cbr.ru/scripts/XML_daily.asp")
CBR_TIMEOUT_SECONDS = env.float("CBR_TIMEOUT_SECONDS", default=15.0)
if PRICING_FIXED_RATE:
    try:
        _fixed_rate = Decimal(PRICING_FIXED_RATE)
    except ArithmeticError:
        _fixed_rate = Decimal(0)
    if not _fixed_rate.is_finite() or _fixed_rate <= 0:
        raise ImproperlyConfigured(
            f"PRICING_FIXED_RATE must be a positive number of roubles per rupiah (e.g. 0.0055), not "
            f"{PRICING_FIXED_RATE!r}; leave it empty to use the Central Bank's daily rate."
        )
if PRICING_COST_TOLERANCE_PERCENT < 0:
    raise ImproperlyConfigured("PRICING_COST_TOLERANCE_PERCENT must be 0 or more (2 means 2 %).")
if PRICING_MAX_RATE_AGE_DAYS < 0:
    raise ImproperlyConfigured("PRICING_MAX_RATE_AGE_DAYS must be 0 or more days.")

# --- Staff console: alerts and metrics ---------------------------------------------------------
# Staff emailed about problems (comma list); empty sends nothing. Sent by the Celery task
# console.send_staff_alerts every STAFF_ALERT_INTERVAL_SECONDS, each problem at most once per
# STAFF_ALERT_REPEAT_MINUTES.
STAFF_ALERT_EMAILS = env.list("STAFF_ALERT_EMAILS", default=[])
STAFF_ALERT_INTERVAL_SECONDS = env.int("STAFF_ALERT_INTERVAL_SECONDS", default=60)
STAFF_ALERT_REPEAT_MINUTES = env.int("STAFF_ALERT_REPEAT_MINUTES", default=60)
# A provider deposit (ProviderAccount.balance, in the provider's currency) under this is a problem.
PROVIDER_BALANCE_ALERT = env.int("PROVIDER_BALANCE_ALERT", default=None)
# A PAID order not fulfilled after this many minutes is a problem.
ORDER_PAID_TOO_LONG_MINUTES = env.int("ORDER_PAID_TOO_LONG_MINUTES", default=30)
# Alerts leave through the customer email settings above (EMAIL_URL, DEFAULT_FROM_EMAIL).
# The public address of this site (https://shop.example.com): alert emails link to admin pages there.
STAFF_CONSOLE_URL = env("STAFF_CONSOLE_URL", default="")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# The halt banner on every admin page reads the halts at most once per this many seconds per process.
CONSOLE_HALT_CACHE_SECONDS = env.int("CONSOLE_HALT_CACHE_SECONDS", default=5)
# /metrics (Prometheus) answers only a request with `Authorization: Bearer <METRICS_TOKEN>` and/or
# from METRICS_ALLOWED_NETWORKS (CIDR); with neither set it does not exist (404).
METRICS_TOKEN = env("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])
# Counters count rows whose id was first seen this long ago, so a transaction still open when
# a scrape runs is never skipped.
METRICS_SETTLE_SECONDS = env.int("METRICS_SETTLE_SECONDS", default=60)

# --- Celery -----------------------------------------------------------------------------------
# The default broker is Celery's filesystem transport: no server, works on any laptop.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://localhost//")
_broker_dir = VAR_DIR / "celery" / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Every folder the transport writes is named here: an option left out falls back to a path
    # relative to the working directory (kombu's `control_folder` default is ./control).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(VAR_DIR / "celery" / "processed"),
        "control_folder": str(VAR_DIR / "celery" / "control"),
        "store_processed": False,
    }
    for _option, _folder in CELERY_BROKER_TRANSPORT_OPTIONS.items():
        if "folder" in _option:
            Path(_folder).mkdir(parents=True, exist_ok=True)
else:
    # Redis re-delivers an unacknowledged message after the visibility timeout. It must be
    # longer than any countdown we schedule, or a delayed retry would be delivered twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=2 * 3600),
    }
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
        # Without a socket timeout, a Redis that stops answering without closing the connection
        # (failover, NAT or firewall timeout) hangs every publish for good: the webhook's too,
        # after it has committed a payment. Reconciliation queues what a failed publish left.
        _broker_timeout = env.float("CELERY_BROKER_SOCKET_TIMEOUT", default=3.0)
        CELERY_BROKER_TRANSPORT_OPTIONS.update(socket_timeout=_broker_timeout, socket_connect_timeout=_broker_timeout)
# One retry, then give up: a request must not wait out a broker outage (the bank allows 10 s).
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# What a task prints (the development consolemail:// backend prints each customer email) is
# logged at INFO: Celery's default, WARNING, made every email sent look like a problem.
CELERY_WORKER_REDIRECT_STDOUTS_LEVEL = "INFO"
CELERY_WORKER_POOL = env("CELERY_WORKER_POOL", default="threads")
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=32)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celery" / "beat-schedule")
# Beat opens its schedule file but does not create its folder: on a fresh machine with a network
# broker (nothing else writes under VAR_DIR) it would stop at startup.
try:
    Path(CELERY_BEAT_SCHEDULE_FILENAME).parent.mkdir(parents=True, exist_ok=True)
except OSError:
    pass  # a read-only filesystem (a web container): only beat needs the folder, and says so
# Celery logs every run of every task at INFO; the periodic ones (reconciliation, account check)
# run every few seconds and mostly find nothing, so their lines are dropped unless this is set.
CELERY_LOG_PERIODIC_TASKS = env.bool("CELERY_LOG_PERIODIC_TASKS", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# plain: `time level logger message [order <public id>]`; json: one JSON object per line (time,
# level, logger, message, order, task), for a log collector. Secret values are masked in both
# (fulfillment_site/logs.py). With json the Celery worker and beat write through it too.
LOG_FORMAT = env("LOG_FORMAT", default="plain").strip().lower()
LOGGING = logging_config(log_format=LOG_FORMAT, level=env("LOG_LEVEL", default="INFO"))

# --- Health checks (fulfillment_site/health.py) ------------------------------------------------
# /healthz (the process answers) and /readyz (database, broker, migrations) are answered before
# any other middleware: no HTTPS redirect, host check, session or throttle stands between a load
# balancer and them. Each /readyz check waits at most this long for the broker.
HEALTH_CHECK_TIMEOUT_SECONDS = env.float("HEALTH_CHECK_TIMEOUT_SECONDS", default=2.0)
