"""Settings for the fulfillment service.

Every value comes from the environment or a `.env` file (see `.env.example`), read through
django-environ. The defaults run on a laptop with nothing installed: SQLite and an embedded
Celery broker on the filesystem under `var/`. Production points `DATABASE_URL` at PostgreSQL
and `CELERY_BROKER_URL` at Redis or RabbitMQ; no code changes.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
env_file = BASE_DIR / ".env"
if env_file.exists():
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

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "orders.apps.OrdersConfig",
    "fulfillment.apps.FulfillmentConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "fulfillment_site.urls"
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

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# Benchmarks only (bench/run.py): routes bench/floor, an unauthenticated endpoint that inserts a
# row for every request. Never enable it on a server that anyone else can reach.
BENCHMARK_FLOOR_ENDPOINT = env.bool("BENCHMARK_FLOOR_ENDPOINT", default=False)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
}

# --- T-Bank internet acquiring ----------------------------------------------------------------
TBANK_TERMINAL_KEY = env("TBANK_TERMINAL_KEY", default="")
TBANK_PASSWORD = env("TBANK_PASSWORD", default="")
# Optional allow-list of source networks (CIDR). Empty means any source; the token is what
# authenticates a notification, the list is defence in depth.
TBANK_ALLOWED_NETWORKS = env.list("TBANK_ALLOWED_NETWORKS", default=[])
TBANK_TRUST_X_FORWARDED_FOR = env.bool("TBANK_TRUST_X_FORWARDED_FOR", default=False)
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

# --- Celery -----------------------------------------------------------------------------------
# The default broker is Celery's filesystem transport: no server, works on any laptop.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://localhost//")
_broker_dir = VAR_DIR / "celery" / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _folder in ("broker", "processed"):
        (VAR_DIR / "celery" / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(VAR_DIR / "celery" / "processed"),
        "store_processed": False,
    }
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
CELERY_WORKER_POOL = env("CELERY_WORKER_POOL", default="threads")
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=32)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celery" / "beat-schedule")
# Celery logs every run of every task at INFO; the periodic ones (reconciliation, account check)
# run every few seconds and mostly find nothing, so their lines are dropped unless this is set.
CELERY_LOG_PERIODIC_TASKS = env.bool("CELERY_LOG_PERIODIC_TASKS", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
