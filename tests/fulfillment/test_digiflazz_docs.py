"""docs/digiflazz.md documents the response-code table the code actually uses."""

from __future__ import annotations

import re
from pathlib import Path

from fulfillment.providers.base import FailureScope
from fulfillment.providers.digiflazz import PENDING_CODES, RESPONSE_CODES, response_codes_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "digiflazz.md"
ROW = re.compile(r"^\| `(\d\d)` \| (\w+) \| (\w+) \|", re.M)


def _documented_table() -> str:
    match = re.search(r"<!-- rc-table:start -->\n(.*?)\n<!-- rc-table:end -->", DOC.read_text(), re.S)
    assert match, "docs/digiflazz.md lost its rc-table markers"
    return match.group(1)


def test_doc_table_equals_the_code_table():
    assert _documented_table() == response_codes_markdown(), (
        "docs/digiflazz.md is out of date: paste response_codes_markdown() between the rc-table markers."
    )


def test_doc_lists_every_code_with_whom_it_concerns_and_its_scope():
    rows = {rc: (concerns, scope) for rc, concerns, scope in ROW.findall(_documented_table())}
    assert {rc: (scope.concerns, scope.value) for rc, (scope, _) in RESPONSE_CODES.items()} == {
        rc: row for rc, row in rows.items() if rc in RESPONSE_CODES
    }
    assert set(rows) == set(RESPONSE_CODES) | set(PENDING_CODES) | {"00"}
    assert {concerns for concerns, _ in rows.values()} == {"unit", "product", "shop"}


def test_each_scope_concerns_one_party():
    assert {scope: scope.concerns for scope in FailureScope} == {
        FailureScope.RETRYABLE: "unit",
        FailureScope.PERMANENT: "unit",
        FailureScope.PRODUCT: "product",
        FailureScope.PRICE: "product",
        FailureScope.SHOP: "shop",
        FailureScope.CONFIGURATION: "shop",
    }
