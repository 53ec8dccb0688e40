"""HTTP clients of the inventory service and the payment gateway simulator."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from services.orders.errors import DependencyFailed, OutOfStock, UnknownSku
from services.orders.settings import OrdersSettings


def open_http_client(settings: OrdersSettings) -> httpx.AsyncClient:
    # httpx logs every request at INFO; under a flash sale that drowns the service's own log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    limits = httpx.Limits(
        max_connections=settings.orders_dependency_max_connections,
        max_keepalive_connections=settings.orders_dependency_max_connections,
    )
    return httpx.AsyncClient(timeout=settings.orders_dependency_timeout_s, limits=limits)


@dataclass(frozen=True)
class InventoryClient:
    """The inventory service, called synchronously by the naive checkout."""

    http: httpx.AsyncClient
    base_url: str

    async def set_stock(self, *, sku: str, available: int) -> None:
        await self._call("PUT", f"/v1/stock/{sku}", json={"available": available})

    async def available(self, sku: str) -> int | None:
        response = await self._call("GET", f"/v1/stock/{sku}", allow=(404,))
        return None if response.status_code == 404 else int(response.json()["available"])

    async def reserve(self, *, sku: str, quantity: int) -> None:
        body = {"sku": sku, "quantity": quantity}
        response = await self._call("POST", "/v1/reservations", json=body, allow=(404, 409))
        if response.status_code == 409:
            raise OutOfStock(sku)
        if response.status_code == 404:
            raise UnknownSku(sku)

    async def _call(
        self, method: str, path: str, *, json: object = None, allow: tuple[int, ...] = ()
    ) -> httpx.Response:
        try:
            response = await self.http.request(method, self.base_url + path, json=json)
        except httpx.HTTPError as exc:
            raise DependencyFailed("inventory", type(exc).__name__) from exc
        if response.is_error and response.status_code not in allow:
            raise DependencyFailed("inventory", f"HTTP {response.status_code}")
        return response


@dataclass(frozen=True)
class PaymentGatewayClient:
    """The third-party payment API. With ``idempotency_key`` a retry never charges twice."""

    http: httpx.AsyncClient
    base_url: str

    async def charge(
        self, *, order_id: str, amount_cents: int, currency: str, idempotency_key: str | None = None
    ) -> str:
        """Charge for an order and return the charge id; raise :class:`DependencyFailed`."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"order_id": order_id, "amount_cents": amount_cents, "currency": currency}
        try:
            response = await self.http.post(self.base_url + "/v1/charges", json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DependencyFailed("payment gateway", type(exc).__name__) from exc
        if response.is_error:
            raise DependencyFailed("payment gateway", f"HTTP {response.status_code}")
        return str(response.json()["charge_id"])
