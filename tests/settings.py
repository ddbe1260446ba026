"""Settings for the test suite: the real settings with deterministic, fast, secret-free values.

DATABASE_URL and CELERY_BROKER_URL still come from the environment, so the same suite runs
on SQLite and on PostgreSQL + Redis (see .ci/run).
"""

import os
from pathlib import Path

# `make run` writes a development .env (DEBUG, the sandbox bank); the suite must not read it.
os.environ["DJANGO_IGNORE_DOTENV"] = "1"
os.environ.setdefault("VAR_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test"))
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key")

from fulfillment_site.settings import *  # noqa: E402,F403

DEBUG = False
# The shop defaults to Russian (fulfillment_site/settings.py); the suite's assertions are written
# against the English source strings, and the Russian pages have their own tests that ask for it
# (tests/test_locale.py, tests/console/test_russian.py).
LANGUAGE_CODE = "en"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
TBANK_TERMINAL_KEY = "TestTerminalDEMO"
TBANK_PASSWORD = "test-terminal-password"
TBANK_ALLOWED_NETWORKS = []
FULFILLMENT_PROVIDER = "mock"
FULFILLMENT_PROVIDERS = {
    "mock": "fulfillment.providers.mock.MockProvider",
    "digiflazz": "fulfillment.providers.digiflazz.DigiflazzProvider",
}
MOCK_FULFILLMENT_DELAY_MIN = 0.0
MOCK_FULFILLMENT_DELAY_MAX = 0.0
MOCK_FULFILLMENT_SUCCESS_RATE = 1.0
MOCK_FULFILLMENT_PENDING_RATE = 0.0
MOCK_FULFILLMENT_SEED = 1234
DIGIFLAZZ_USERNAME = ""
DIGIFLAZZ_API_KEY = ""
DIGIFLAZZ_WEBHOOK_SECRET = ""
DIGIFLAZZ_TESTING = False
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
MOCK_FULFILLMENT_FAIL_RECIPIENTS = []
# Refunds are sent eagerly in tests that capture on_commit: never towards the real bank. Port 9
# (discard) refuses at once, which the client reports as an unknown outcome.
TBANK_API_URL = "http://127.0.0.1:9/v2/"
TBANK_TIMEOUT_SECONDS = 5.0
# Delivery tests look at FAILED units as they are; refund tests choose their policy (production: auto).
REFUND_POLICY = "staff"
# No collectstatic before the tests: WhiteNoise looks files up per request instead of warning
# that STATIC_ROOT is missing (tests/test_static_files.py checks the production mode).
WHITENOISE_AUTOREFRESH = True
# The halt banner's per-process cache would carry a halt from one test into the next.
CONSOLE_HALT_CACHE_SECONDS = 0
STAFF_ALERT_EMAILS = []
PROVIDER_BALANCE_ALERT = None
METRICS_TOKEN = ""
METRICS_ALLOWED_NETWORKS = []
METRICS_SETTLE_SECONDS = 0
