"""docs/digiflazz.md documents the response-code table the code actually uses."""

from __future__ import annotations

import re
from pathlib import Path

from fulfillment.providers.digiflazz import PENDING_CODES, RESPONSE_CODES, response_codes_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "digiflazz.md"


def _documented_table() -> str:
    match = re.search(r"<!-- rc-table:start -->\n(.*?)\n<!-- rc-table:end -->", DOC.read_text(), re.S)
    assert match, "docs/digiflazz.md lost its rc-table markers"
    return match.group(1)


def test_doc_table_equals_the_code_table():
    assert _documented_table() == response_codes_markdown(), (
        "docs/digiflazz.md is out of date: paste response_codes_markdown() between the rc-table markers."
    )


def test_doc_lists_every_code_with_its_scope():
    rows = dict(re.findall(r"^\| `(\d\d)` \| (\w+) \|", _documented_table(), re.M))
    assert {rc: scope for rc, (scope, _) in RESPONSE_CODES.items()} == {
        rc: scope for rc, scope in rows.items() if rc in RESPONSE_CODES
    }
    assert set(rows) == set(RESPONSE_CODES) | set(PENDING_CODES) | {"00"}
