"""Example custom tools for ``config/examples/tools_profile.toml``.

A custom tool is any Python function named in the profile as ``module:function``. Its
parameters' type hints (str, int, float, bool, Literal, list) and its docstring become what the
model sees; the ``Args:`` section describes each parameter. Plain functions run in a thread,
async functions on the event loop. Return a string (or anything JSON can encode); raise an
exception to tell the model the tool failed.
"""

from __future__ import annotations

import asyncio
from typing import Literal

_ORDERS = {"A1001": "shipped on Monday", "A1002": "waiting for payment"}


def order_status(order_id: str) -> str:
    """Look up the delivery status of an order.

    Args:
        order_id: The order number the caller reads out, e.g. A1001.
    """
    status = _ORDERS.get(order_id.strip().upper())
    if status is None:
        raise LookupError(f"there is no order {order_id}")
    return f"Order {order_id.upper()} is {status}."


async def opening_hours(day: Literal["weekday", "saturday", "sunday"]) -> str:
    """Opening hours of the shop.

    Args:
        day: Which kind of day the caller asks about.
    """
    await asyncio.sleep(0)  # An async tool would await its database or HTTP client here.
    return {"weekday": "9:00 to 18:00", "saturday": "10:00 to 14:00", "sunday": "closed"}[day]


def pay_invoice(invoice: str, card_number: str, amount: float) -> str:
    """Pay an invoice by card.

    Args:
        invoice: The invoice number.
        card_number: The card number (redacted in logs and transcripts by the profile).
        amount: The amount in euros.
    """
    return f"Invoice {invoice}: {amount:.2f} EUR paid with the card ending {card_number[-4:]}."
