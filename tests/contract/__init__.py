"""The API contract run: Schemathesis against a live server, shared by the CI test
(tests/integration/test_api_contract.py) and `make contract` (scripts/contract.py).

Both start the same server (gunicorn, DEBUG off, the fake T-Bank answering Init) on a catalogue
loaded here, and run `st run <server>/api/schema/` with every check and every phase (examples,
coverage, fuzzing, stateful), on one worker. The only settings are in schemathesis.toml: which
statuses answer valid and invalid data.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).parent / "st"

#: Products of the contract run. Sorted by name the first one takes any recipient, so the
#: catalogue's link to POST /api/orders (it orders the first product listed) makes orders whose
#: status the next link reads: the stateful phase walks a customer's whole path.
CATALOGUE = (
    {"name": "A voucher 50k", "sku": "contract-vc50", "price_kopecks": 55000},
    {
        "name": "Game top-up 86 diamonds",
        "sku": "contract-ml86",
        "price_kopecks": 25000,
        "recipient_label": "Player ID",
        "recipient_pattern": "[0-9]{4,12}",
    },
    {
        "name": "Mobile credit 10k",
        "sku": "contract-xld10",
        "price_kopecks": 15000,
        "recipient_label": "Phone number",
        "recipient_pattern": "08[0-9]{8,11}",
    },
)

#: The order throttle of the server under test. Order creation is throttled per client address
#: (20/min by default) and every generated request comes from 127.0.0.1, so with the default
#: whether a POST answers 201 or 429 would depend on how fast the machine is, and the same seed
#: would not give the same run. The throttle itself is covered by tests/checkout.
THROTTLE_RATE = "100000/min"


#: The category and brand every contract product is in: the first of each in a fresh database, the
#: ids schemathesis.toml pins GET /api/products to (so the catalogue is never filtered to nothing).
CATALOGUE_GROUP_ID = 1


def catalogue_load() -> None:
    """Put CATALOGUE on sale in the current database (idempotent), in one category and brand."""
    from orders.models import Brand, Category, Product

    category, _ = Category.objects.get_or_create(name="Contract")
    brand, _ = Brand.objects.get_or_create(name="Contract")
    if (category.pk, brand.pk) != (CATALOGUE_GROUP_ID, CATALOGUE_GROUP_ID):
        raise RuntimeError(
            f"The contract catalogue's category and brand must be the first ones (id {CATALOGUE_GROUP_ID}), "
            f"not {category.pk} and {brand.pk}: run it on a fresh database (schemathesis.toml pins those ids)."
        )
    for fields in CATALOGUE:
        Product.objects.update_or_create(
            sku=fields["sku"], defaults={**fields, "is_active": True, "category": category, "brand": brand}
        )


def server_env(*, bank_api_url: str, public_base_url: str) -> dict[str, str]:
    """Settings of the server under test, on top of a production-like environment."""
    return {
        "TBANK_API_URL": bank_api_url,
        "TBANK_SANDBOX": "false",
        "TBANK_TIMEOUT_SECONDS": "5",
        "PUBLIC_BASE_URL": public_base_url,
        "ORDER_CREATE_THROTTLE_RATE": THROTTLE_RATE,
    }


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str

    @property
    def passed(self) -> bool:
        return self.returncode == 0


def schemathesis_command(
    base_url: str, *, seed: int | None, max_examples: int, report_dir: Path | None = None
) -> list[str]:
    """`st run` of the contract: every check, every phase, one worker (a run is repeatable with its seed)."""
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "run",
        f"{base_url}/api/schema/",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--workers",
        "1",
        "--max-examples",
        str(max_examples),
        "--generation-database",
        "none",
        # Hypothesis' too_slow health check times data generation, so on a busy machine it would
        # fail a run that passes on an idle one. The other health checks count, not time: kept.
        "--suppress-health-check",
        "too_slow",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    if seed is not None:
        command += ["--seed", str(seed)]
    if report_dir is not None:
        command += ["--report", "junit", "--report-dir", str(report_dir)]
    return command


def schemathesis_run(command: list[str], *, echo: bool = False, timeout: float | None = None) -> Run:
    """Run `command`; with `echo` its output is printed as it comes (progress), and kept either way.
    Past `timeout` seconds it is killed, and the run fails saying so."""
    lines: list[str] = []
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        watchdog = threading.Timer(timeout, proc.kill) if timeout else None
        if watchdog:
            watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if echo:
                    print(line, end="", flush=True)
            returncode = proc.wait()
        finally:
            if watchdog:
                watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
    if returncode < 0 and timeout:
        lines.append(f"\nKilled: Schemathesis did not finish within {timeout:.0f} s.\n")
    return Run(returncode, "".join(lines))
