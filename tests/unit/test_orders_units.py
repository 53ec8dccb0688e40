"""Pure pieces of the order flow: error mapping, fingerprints, backoff, admission, events."""

from __future__ import annotations

import json

import pytest
from aiokafka import ConsumerRecord

from services.orders.consumers import by_key
from services.orders.errors import (
    IdempotencyKeyInFlight,
    IdempotencyKeyMissing,
    IdempotencyKeyReused,
    NotAuthorized,
    OutOfStock,
    Overloaded,
    SoldOutGateUnavailable,
    UnknownSku,
    to_problem,
)
from services.orders.events import OrderPlaced, header_value, message_headers
from services.orders.hardened import AdmissionGate
from services.orders.idempotency import fingerprint
from services.orders.ports import PlaceOrder
from services.orders.relay import Backoff
from services.orders.settings import OrdersSettings, schema_for


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (OutOfStock("s"), 409, "out-of-stock"),
        (UnknownSku("s"), 422, "unknown-sku"),
        (IdempotencyKeyMissing(), 400, "idempotency-key-missing"),
        (IdempotencyKeyReused(), 422, "idempotency-key-reused"),
        (IdempotencyKeyInFlight(), 409, "idempotency-key-in-flight"),
        (Overloaded(), 429, "overloaded"),
        (NotAuthorized(), 401, "unauthorized"),
        (SoldOutGateUnavailable("s"), 503, "sold-out-gate-unavailable"),
    ],
)
def test_domain_errors_map_to_their_problem(error: Exception, status: int, kind: str) -> None:
    problem = to_problem(error, retry_after_s=2)  # type: ignore[arg-type]
    assert (problem.status, problem.kind) == (status, kind)


def test_shed_and_in_flight_answers_say_when_to_retry() -> None:
    assert to_problem(Overloaded(), retry_after_s=3).headers["Retry-After"] == "3"
    assert to_problem(IdempotencyKeyInFlight(), retry_after_s=1).headers["Retry-After"] == "1"
    assert "Retry-After" not in to_problem(OutOfStock("s")).headers


def test_a_fingerprint_depends_on_every_field_and_nothing_else() -> None:
    order = PlaceOrder(sku="a", quantity=1, customer_id="c")
    assert fingerprint(order) == fingerprint(PlaceOrder(sku="a", quantity=1, customer_id="c"))
    assert fingerprint(order) != fingerprint(PlaceOrder(sku="a", quantity=2, customer_id="c"))
    assert fingerprint(order) != fingerprint(PlaceOrder(sku="b", quantity=1, customer_id="c"))


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    backoff = Backoff(initial_s=0.1, max_s=0.5)
    assert [backoff.next_delay() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    backoff.reset()
    assert backoff.next_delay() == 0.1


def test_admission_sheds_beyond_the_limit_and_frees_slots() -> None:
    gate = AdmissionGate(limit=1)
    with gate.admit(), pytest.raises(Overloaded), gate.admit():
        pass
    with gate.admit():
        assert gate.in_flight == 1
    assert gate.in_flight == 0


def test_an_event_survives_its_payload_and_headers() -> None:
    event = OrderPlaced(order_id="o", sku="s", customer_id="c", quantity=1, amount_cents=5, currency="EUR")
    assert OrderPlaced.from_payload(json.loads(event.to_json())) == event
    assert header_value(message_headers(message_id="42"), "message_id") == "42"
    assert header_value(None, "message_id") is None


def test_variants_have_their_own_schema_and_topic() -> None:
    settings = OrdersSettings()
    assert settings.topic_for("hardened") == "orders.events"
    assert settings.topic_for("naive") != settings.topic_for("hardened")
    assert schema_for("naive") == "orders_naive"


def _record(key: bytes, offset: int) -> ConsumerRecord:
    return ConsumerRecord(
        topic="t", partition=0, offset=offset, timestamp=0, timestamp_type=0, key=key, value=b"{}",
        checksum=None, serialized_key_size=len(key), serialized_value_size=2, headers=(),
    )  # fmt: skip


def test_a_batch_is_split_by_order_each_order_keeping_its_partition_order() -> None:
    batch = [_record(b"a", 0), _record(b"b", 1), _record(b"a", 2), _record(b"b", 3), _record(b"a", 4)]

    groups = by_key(batch)

    assert {key: [r.offset for r in records] for key, records in groups.items()} == {
        b"a": [0, 2, 4],
        b"b": [1, 3],
    }
