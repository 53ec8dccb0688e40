"""What both variants of the orders service implement, and the values that cross that line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID, uuid4


@dataclass(frozen=True)
class FlashSale:
    sku: str
    stock: int
    price_cents: int


@dataclass(frozen=True)
class PlaceOrder:
    """The command behind ``POST /api/v1/orders``."""

    sku: str
    quantity: int
    customer_id: str


@dataclass(frozen=True)
class OrderReply:
    """The HTTP answer to a placed order: a variant that replays answers must store exactly this."""

    status_code: int
    body: dict[str, Any]
    replayed: bool = False


@dataclass(frozen=True)
class OrderRecord:
    order_id: UUID
    sku: str
    customer_id: str
    quantity: int
    amount_cents: int
    status: str

    @classmethod
    def placed(cls, command: PlaceOrder, sale: FlashSale) -> OrderRecord:
        """A new order for ``command`` at the sale's price, waiting for its payment."""
        return cls(
            order_id=uuid4(),
            sku=command.sku,
            customer_id=command.customer_id,
            quantity=command.quantity,
            amount_cents=sale.price_cents * command.quantity,
            status="pending_payment",
        )


@dataclass(frozen=True)
class StockLevel:
    sku: str
    stock: int
    available: int


class OrderFlow(Protocol):
    """The checkout of one variant. Naive and hardened differ only in how they implement this."""

    async def open_sale(self, sale: FlashSale) -> None:
        """Reset and seed one sale: its stock, its price, no orders."""

    async def place_order(self, command: PlaceOrder, *, idempotency_key: str | None) -> OrderReply:
        """Take an order; raise a domain error (:mod:`services.orders.errors`) when it cannot."""

    async def find_order(self, order_id: UUID) -> OrderRecord | None: ...

    async def stock_of(self, sku: str) -> StockLevel | None: ...
