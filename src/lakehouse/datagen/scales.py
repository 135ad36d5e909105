"""The size table: how many rows of each source every scale produces. The one place to change it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    """Row targets for one scale. Counts of entities are exact; rows written differ a little
    (order lines per order vary, CDC rows per ticket vary, defects add duplicate rows)."""

    name: str
    customers: int  # CRM batch 001
    new_customers: int  # customers first seen in CRM batch 002
    changed_customers: int  # existing customers whose address and/or segment change in batch 002
    products: int
    orders: int  # ~2.5 order lines each
    order_files: int
    web_events: int  # target; sessions are drawn to reach it on average
    web_files: int
    tickets: int  # ~3 CDC rows each
    ticket_files: int
    payments: int
    payment_files: int
    merchants: int

    def describe(self) -> str:
        return (
            f"{self.name}: {self.customers:,} customers, {self.orders:,} orders, "
            f"{self.web_events:,} web events, {self.tickets:,} tickets, "
            f"{self.payments:,} payments"
        )


SCALES: dict[str, Scale] = {
    "tiny": Scale("tiny", 200, 10, 20, 60, 1_000, 2, 5_000, 1, 100, 2, 3_000, 4, 80),
    "small": Scale("small", 2_000, 100, 200, 200, 10_000, 2, 50_000, 1, 1_000, 2, 30_000, 6, 400),
    "medium": Scale(
        "medium", 20_000, 1_000, 2_000, 1_000, 100_000, 4, 500_000, 4, 10_000, 4, 300_000, 12, 2_000
    ),
    "large": Scale(
        "large",
        200_000,
        10_000,
        20_000,
        5_000,
        1_000_000,
        10,
        5_000_000,
        20,
        100_000,
        10,
        3_000_000,
        30,
        10_000,
    ),
}


def get_scale(scale: str | Scale) -> Scale:
    """Look a scale up by name; a :class:`Scale` passes through (for custom sizes)."""
    if isinstance(scale, Scale):
        return scale
    try:
        return SCALES[scale]
    except (KeyError, TypeError):
        raise ValueError(f"unknown scale {scale!r}: choose one of {', '.join(SCALES)}") from None
