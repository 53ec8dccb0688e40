"""Every knob of the order-flow design, read from ``LAB_ORDERS_*``, ``LAB_INVENTORY_*`` and
``LAB_PAYMENT_GATEWAY_*`` environment variables (documented in docs/designs/orders.md).

The same settings class serves the orders services, the inventory service, the payment gateway
simulator, the relay and the consumers, so one environment configures a whole lab.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from services.core.settings import CoreSettings

NaiveLocking = Literal["none", "row-lock"]
GatewayFailureMode = Literal["before-charge", "after-charge"]


class OrdersSettings(CoreSettings):
    """Settings of the order flow; every field is ``LAB_<FIELD>`` in the environment."""

    # --- contract -------------------------------------------------------------------------------
    orders_max_quantity: int = Field(default=10, ge=1, description="largest quantity one order may buy")
    orders_currency: str = Field(default="EUR", min_length=3, max_length=3)
    # The learner's own variant ("mine"): the opener of its adapters, as module:attribute. The default
    # is the file 'lab exercise start orders' scaffolds.
    orders_mine: str = "services.orders.mine:open_flow"

    # --- naive variant --------------------------------------------------------------------------
    # none: read, compute, write back (lost update). row-lock: SELECT … FOR UPDATE first.
    orders_naive_locking: NaiveLocking = "none"
    orders_inventory_url: str = "http://127.0.0.1:8303"
    orders_payment_gateway_url: str = "http://127.0.0.1:8304"
    # Timeout of the naive service's synchronous calls to inventory and the gateway.
    orders_dependency_timeout_s: float = Field(default=30.0, gt=0)
    orders_dependency_max_connections: int = Field(default=100, ge=1)
    orders_naive_topic: str = "orders.naive.events"
    # How long the naive service waits for the broker after its commit before giving the event up.
    orders_naive_publish_timeout_s: float = Field(default=2.0, gt=0)

    # --- inventory service (the naive variant's dependency) -------------------------------------
    # Stands for a slow inventory service under load: the pause between reading and writing stock.
    inventory_delay_ms: float = Field(default=20.0, ge=0)

    # --- hardened variant -----------------------------------------------------------------------
    orders_topic: str = "orders.events"
    orders_dlq_topic: str = "orders.events.dlq"
    orders_topic_partitions: int = Field(default=3, ge=1)
    # Idempotency keys are kept at least this long (Stripe keeps them 24 h), then reaped.
    orders_idempotency_ttl_s: float = Field(default=86_400.0, gt=0)
    # A request that crashed while holding its key releases it after this long.
    orders_idempotency_lock_s: float = Field(default=30.0, gt=0)
    orders_idempotency_reap_interval_s: float = Field(default=60.0, gt=0)
    orders_idempotency_key_max_length: int = Field(default=255, ge=8)
    # Admission control: orders in flight per process; beyond it → 429 with Retry-After.
    orders_max_in_flight: int = Field(default=64, ge=1)
    orders_retry_after_s: int = Field(default=1, ge=1)
    # Sold-out gate (ADR 0304): once PostgreSQL has found a sale sold out, Redis remembers it and
    # later buyers get 409 without a PostgreSQL transaction. Off: every order asks PostgreSQL.
    orders_sold_out_gate: bool = True
    # Every wait on the gate's Redis is bounded by this; a slower or failed Redis skips the gate.
    orders_sold_out_gate_timeout_ms: int = Field(default=50, ge=1)
    # How long Redis keeps a sale's gate: a safety net, should stock ever come back some other way
    # than by opening the sale again. A sale that sells out later than this is simply not gated.
    orders_sold_out_gate_ttl_s: float = Field(default=3_600.0, gt=0)

    # --- outbox relay ---------------------------------------------------------------------------
    # Whose outbox the relay reads and whose orders the consumers pay: the hardened variant's, or a
    # learner's own ("mine") when `lab check orders` grades one that writes an outbox.
    orders_workers_variant: Literal["hardened", "mine"] = "hardened"
    orders_relay_batch_size: int = Field(default=500, ge=1)
    orders_relay_poll_interval_s: float = Field(default=0.5, gt=0)
    # After a commit's notification wakes it, the relay waits this long so that the commits of the
    # window go out as one batch rather than a batch of one row each (adds at most this to the lag).
    orders_relay_gather_ms: int = Field(default=20, ge=0)
    orders_relay_backoff_initial_s: float = Field(default=0.2, gt=0)
    orders_relay_backoff_max_s: float = Field(default=5.0, gt=0)

    # --- consumers ------------------------------------------------------------------------------
    orders_consumer_group_prefix: str = "orders"
    orders_consumer_max_attempts: int = Field(default=5, ge=1)
    orders_consumer_retry_backoff_s: float = Field(default=0.2, ge=0)
    orders_consumer_max_records: int = Field(default=200, ge=1)
    # Injected pause between processing a batch and committing its offsets: a window in which a
    # killed consumer has done the work but not recorded it (used by the redelivery test).
    orders_consumer_commit_delay_s: float = Field(default=0.0, ge=0)
    orders_kafka_session_timeout_ms: int = Field(default=6_000, ge=1_000)
    orders_kafka_heartbeat_interval_ms: int = Field(default=500, ge=100)

    # --- payment gateway simulator --------------------------------------------------------------
    payment_gateway_latency_ms: float = Field(default=0.0, ge=0)
    payment_gateway_failure_rate: float = Field(default=0.0, ge=0, le=1)
    # after-charge: the charge is recorded and then the answer fails (a lost response), the case
    # that only an idempotency key makes safe to retry.
    payment_gateway_failure_mode: GatewayFailureMode = "after-charge"

    def topic_for(self, variant: str) -> str:
        """The topic a variant's ``OrderPlaced`` events go to, distinct so both can run side by side."""
        return self.orders_naive_topic if variant == "naive" else self.orders_topic


def schema_for(variant: str) -> str:
    """PostgreSQL schema of one part of the design (``orders_naive``, ``orders_inventory`` …)."""
    return f"orders_{variant}"
