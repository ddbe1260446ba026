"""The API is what its OpenAPI schema says: Schemathesis against the production web process.

gunicorn (DEBUG off) on the PostgreSQL test database, T-Bank answered by the fake bank over
HTTP, the contract catalogue on sale. Schemathesis reads /api/schema/ from that server and runs
every check (status codes, content types, headers and bodies of every answer, errors included;
schema-breaking requests refused, schema-valid ones accepted; resources reachable through the
links) in every phase: examples, coverage, fuzzing and the stateful phase, which follows the
links from the catalogue to an order and from the order to its status, as a customer does.

Deterministic: a fixed seed, one worker, no example database or crash cache carried over, and
the order throttle raised (tests.contract.THROTTLE_RATE says why). Bounded: MAX_EXAMPLES cases
per operation and phase keep it well under two minutes. `make contract` runs the same with a
random seed and more examples.
"""

from __future__ import annotations

import re
import time

import pytest
from django.conf import settings

from tests.contract import SCHEMATHESIS, catalogue_load, schemathesis_command, schemathesis_run, server_env
from tests.fakes.tbank_server import FakeTBank

# Sequences reset: the catalogue has the same ids in every run, so the same seed draws the same requests.
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, reset_sequences=True)]

SEED = 20261202
MAX_EXAMPLES = 25
#: A run that has not finished by then is stuck (a typical one takes well under a minute).
RUN_TIMEOUT_SECONDS = 300


def test_the_api_is_what_its_openapi_schema_says(stack, tmp_path, report):
    assert SCHEMATHESIS.exists(), f"{SCHEMATHESIS} is missing: run `make install` (requirements-dev.txt)"
    catalogue_load()
    with FakeTBank(terminal_key=settings.TBANK_TERMINAL_KEY, password=settings.TBANK_PASSWORD) as bank:
        web = stack.start_web(**server_env(bank_api_url=bank.api_url, public_base_url="https://shop.example.com"))
        started = time.monotonic()
        command = schemathesis_command(web.url, seed=SEED, max_examples=MAX_EXAMPLES, report_dir=tmp_path / "report")
        run = schemathesis_run(command, timeout=RUN_TIMEOUT_SECONDS)
        seconds = time.monotonic() - started
        orders = len(bank.calls("Init"))

    if not run.passed:
        pytest.fail(
            f"Schemathesis found the API differing from its schema (exit {run.returncode}); "
            f"repeat locally with: make contract CONTRACT_ARGS='--seed {SEED} --max-examples {MAX_EXAMPLES}'\n\n"
            f"{run.output}",
            pytrace=False,
        )
    # A run that never followed every link (to the order status above all) would prove little.
    links = re.search(r"API Links:\s+(\d+) covered / \d+ selected / (\d+) total", run.output)
    assert links and int(links[1]) == int(links[2]) >= 2, run.output
    assert orders > 0, "no order was created: the stateful phase never completed a customer's path"
    cases = re.search(r"(\d+) generated", run.output)
    report(
        seed=SEED,
        max_examples=MAX_EXAMPLES,
        test_cases=cases[1] if cases else "?",
        orders_created=orders,
        seconds=round(seconds, 1),
    )
