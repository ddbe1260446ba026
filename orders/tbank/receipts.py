"""54-FZ receipts for Init and partial Cancel (FFD 1.05 schema).

The bank's arithmetic rules, kept here so no caller can break them: every item's Amount is
Price x Quantity (kopecks), and the receipt's items add up to the payment's Amount.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MAX_ITEM_NAME = 128
MAX_ITEMS = 100


@dataclass(frozen=True)
class ReceiptLine:
    """One receipt position: `quantity` units of `name` at `price` kopecks each."""

    name: str
    price: int
    quantity: int

    @property
    def amount(self) -> int:
        return self.price * self.quantity


class ReceiptError(ValueError):
    """A receipt the bank would refuse; the message says which rule it breaks."""


def receipt_build(
    *,
    lines: Iterable[ReceiptLine],
    email: str,
    taxation: str,
    tax: str,
    payment_method: str = "full_prepayment",
    payment_object: str = "service",
) -> dict[str, Any]:
    """The `Receipt` object for `lines`; its items add up to `receipt_total(receipt)`."""
    lines = [line for line in lines if line.quantity > 0]
    if not lines:
        raise ReceiptError("A receipt needs at least one item with a positive quantity.")
    if len(lines) > MAX_ITEMS:
        raise ReceiptError(f"A receipt holds at most {MAX_ITEMS} items, not {len(lines)}.")
    if not email:
        raise ReceiptError("A receipt needs the customer's email (FFD tag 1008).")
    items = [
        {
            "Name": line.name[:MAX_ITEM_NAME],
            "Price": line.price,
            "Quantity": line.quantity,
            "Amount": line.amount,
            "Tax": tax,
            "PaymentMethod": payment_method,
            "PaymentObject": payment_object,
        }
        for line in lines
    ]
    return {"Email": email[:64], "Taxation": taxation, "Items": items}


def receipt_total(receipt: dict[str, Any]) -> int:
    """Sum of the receipt's item Amounts (kopecks): must equal the payment or refund Amount."""
    return sum(int(item["Amount"]) for item in receipt.get("Items", []))
