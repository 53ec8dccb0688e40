"""Domain errors of the order flow, and their one mapping to problem+json (:func:`error_mapping`)."""

from __future__ import annotations

from services.core.problems import ErrorMapping, Problem, problem_body
from services.orders.ports import OrderReply


class OrderError(Exception):
    """Base of every error a client of the orders service can cause or observe."""


class UnknownSku(OrderError):
    """No flash sale is open for this SKU (a bad body: 422)."""

    def __init__(self, sku: str) -> None:
        super().__init__(f"no sale is open for sku {sku!r}")
        self.sku = sku


class SaleNotFound(OrderError):
    """No flash sale is open for the SKU a client asked about (404, where a bad order body is 422)."""

    def __init__(self, sku: str) -> None:
        super().__init__(f"no sale is open for sku {sku!r}")
        self.sku = sku


class QuantityTooLarge(OrderError):
    """More units than one order may buy (a bad body: 422)."""

    def __init__(self, quantity: int, limit: int) -> None:
        super().__init__(f"quantity {quantity} is above the limit of {limit} per order")


class OutOfStock(OrderError):
    """Not enough units left (409)."""

    def __init__(self, sku: str) -> None:
        super().__init__(f"sku {sku!r} does not have enough stock left")
        self.sku = sku


class OrderNotFound(OrderError):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"no order {order_id}")


class IdempotencyKeyMissing(OrderError):
    """The hardened variant requires ``Idempotency-Key`` on every order (400)."""

    def __init__(self) -> None:
        super().__init__("the Idempotency-Key header is required")


class IdempotencyKeyInvalid(OrderError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the Idempotency-Key header must be 1 to {limit} visible characters")


class IdempotencyKeyReused(OrderError):
    """The key was already used with a different request body (422)."""

    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was already used with a different request")


class IdempotencyKeyInFlight(OrderError):
    """A request with this key is still being processed (409); retry later."""

    def __init__(self) -> None:
        super().__init__("a request with this Idempotency-Key is still in flight")


class Overloaded(OrderError):
    """Admission control shed the request (429)."""

    def __init__(self) -> None:
        super().__init__("too many orders in flight; retry later")


class SoldOutGateUnavailable(OrderError):
    """Opening a sale needs the sold-out gate reset first, and its Redis did not answer (503): the
    sale is left as it was rather than risk the new stock meeting the old sale's sold-out mark."""

    def __init__(self, sku: str) -> None:
        super().__init__(f"the sold-out gate of sku {sku!r} could not be reset; the sale was not opened")


class DependencyFailed(OrderError):
    """A service the naive variant calls synchronously failed or timed out (502)."""

    def __init__(self, dependency: str, reason: str) -> None:
        super().__init__(f"{dependency} failed: {reason}")


class NotAuthorized(OrderError):
    def __init__(self) -> None:
        super().__init__("a valid admin bearer token is required")


def to_problem(error: OrderError, *, retry_after_s: int = 1) -> Problem:
    """The problem+json a domain error is shown as."""
    status, kind, title = _STATUS[type(error)]
    headers: dict[str, str] = {}
    if status in (429, 503) or isinstance(error, IdempotencyKeyInFlight):
        headers["Retry-After"] = str(retry_after_s)
    if isinstance(error, NotAuthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return Problem(status=status, kind=kind, title=title, detail=str(error), headers=headers)


def error_mapping(*, retry_after_s: int) -> ErrorMapping[OrderError]:
    """The mapping an orders app installs; its ``Retry-After`` comes from the app's settings."""

    def shown(error: OrderError) -> Problem:
        return to_problem(error, retry_after_s=retry_after_s)

    return ErrorMapping(base=OrderError, to_problem=shown)


def problem_reply(error: OrderError) -> OrderReply:
    """An error as the answer a variant returns (and stores for replay) instead of raising it."""
    problem = to_problem(error)
    return OrderReply(problem.status, problem_body(problem))


_STATUS: dict[type[OrderError], tuple[int, str, str]] = {
    UnknownSku: (422, "unknown-sku", "No sale is open for this SKU"),
    SaleNotFound: (404, "unknown-sku", "No sale for this SKU"),
    QuantityTooLarge: (422, "quantity-too-large", "Quantity above the per-order limit"),
    OutOfStock: (409, "out-of-stock", "Out of stock"),
    OrderNotFound: (404, "order-not-found", "Order not found"),
    IdempotencyKeyMissing: (400, "idempotency-key-missing", "Idempotency-Key required"),
    IdempotencyKeyInvalid: (400, "idempotency-key-invalid", "Idempotency-Key not valid"),
    IdempotencyKeyReused: (422, "idempotency-key-reused", "Idempotency-Key reused"),
    IdempotencyKeyInFlight: (409, "idempotency-key-in-flight", "Request still in flight"),
    Overloaded: (429, "overloaded", "Too many orders in flight"),
    SoldOutGateUnavailable: (503, "sold-out-gate-unavailable", "The sale could not be opened"),
    DependencyFailed: (502, "dependency-failed", "A dependency failed"),
    NotAuthorized: (401, "unauthorized", "Unauthorized"),
}
