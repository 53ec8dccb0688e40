"""The order flow's questions, each a named scenario of ``lab bench orders``.

- ``flash-sale`` (the headline): buyers who each buy once, with a deadline and one retry.
- ``hot-sku``: capacity at the SLO of orders for one SKU that never sells out, naive with both of
  its lock settings against hardened.
- ``relay``: orders at a steady rate; how fast and how late the outbox relay publishes their events.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from loadtests.engine.lab import AppSpec, Companion
from loadtests.engine.scenario import BenchDesign, Goal, Scenario, Sweep, Target
from loadtests.orders.audit import audit_flash_sale, audit_hot_sku, audit_relay, sale_reset, sale_so_far

HERE = Path(__file__).parent
NAIVE = Target("naive", "orders-naive", "naive")
HARDENED = Target("hardened", "orders-hardened", "hardened")
MINE = Target("mine", "orders-mine", "mine")  # a learner's variant: lab exercise start orders
# The naive variant's other lock setting: SELECT … FOR UPDATE on the SKU's one inventory row. The
# inventory service takes the lock, so this naive service calls an inventory service of its own,
# started with the setting; the lab's own keeps the default.
ROW_LOCK = {"LAB_ORDERS_NAIVE_LOCKING": "row-lock"}
NAIVE_ROW_LOCK = Target(
    "naive-row-lock",
    "orders-naive-row-lock",
    "naive",
    app=AppSpec(
        "services.orders.app:create_app",
        "naive",
        env=ROW_LOCK,
        companions=(
            Companion(
                "orders-inventory-row-lock",
                AppSpec("services.orders.inventory:create_app", "inventory", env=ROW_LOCK),
                "LAB_ORDERS_INVENTORY_URL",
            ),
        ),
    ),
)

FLASH_SKU, FLASH_STOCK = "flash", 100
HOT_SKU, RELAY_SKU, NEVER_SOLD_OUT = "hot", "relay", 100_000_000
# A slow-but-working inventory service and gateway (as in an ordinary hour, not the incident): the
# naive order waits for both on its request path, the hardened one for neither.
ORDINARY_DEPENDENCIES = {"LAB_INVENTORY_DELAY_MS": "20", "LAB_PAYMENT_GATEWAY_LATENCY_MS": "50"}

FLASH_SALE = Scenario(
    name="flash-sale",
    title="Order flow: flash sale",
    question="Does each variant sell exactly its stock, charge each buyer once, and answer in time?",
    what_to_watch=(
        f"{FLASH_STOCK} units, buyers who each want one and retry once when the answer is late. Watch "
        "oversold units (the naive stock check reads, waits for the slow inventory service, and writes "
        "back), customers charged twice (a retry is a new order), and p99 against the client timeout."
    ),
    targets=(NAIVE, HARDENED),
    learner=MINE,
    locustfile=HERE / "flash_users.py",
    reset=sale_reset(sku=FLASH_SKU, stock=FLASH_STOCK),
    audit=partial(audit_flash_sale, sku=FLASH_SKU),
    live_audit=partial(sale_so_far, sku=FLASH_SKU),
    mode="closed",
    closed_user="FlashSaleBuyer",
    users=400,
    warmup_s=0.0,  # the sale is the burst at the start: nothing to trim
    load_env={"LAB_LOAD_SKU": FLASH_SKU},
    # The lab compresses the incident's time: a 1.2 s gateway and a 1 s client timeout stand
    # for a stalled payment provider and a frontend giving up, so a short run shows what a real
    # sale shows over minutes.
    deadline_s=1.0,
    lab_env={"LAB_PAYMENT_GATEWAY_LATENCY_MS": "1200"},
)

HOT_SKU_SCENARIO = Scenario(
    name="hot-sku",
    title="Order flow: one hot SKU, capacity at the SLO",
    question="How many orders per second for one SKU does each variant hold at the SLO?",
    what_to_watch=(
        "Every order is for the same SKU, whose stock never runs out. The naive order calls the "
        "inventory service and the payment gateway on its request path and, with row locking, queues "
        "every buyer on the SKU's one inventory row; the hardened one decrements the stock in one "
        "conditional UPDATE and pays later through the outbox."
    ),
    targets=(NAIVE, NAIVE_ROW_LOCK, HARDENED),
    learner=MINE,
    locustfile=HERE / "users.py",
    reset=sale_reset(sku=HOT_SKU, stock=NEVER_SOLD_OUT),
    audit=partial(audit_hot_sku, sku=HOT_SKU),
    live_audit=partial(sale_so_far, sku=HOT_SKU),
    mode="sweep",
    open_user="HotSkuArrivals",
    closed_user="HotSkuBuyer",
    sweep=Sweep(start=25.0, factor=1.6, steps=6),
    # An order waits for the database and, in the naive flow, for the inventory service and the
    # gateway (70 ms together in an ordinary hour): its SLO is a checkout's, not a redirect's.
    slo_p99_ms=250.0,
    goals=(
        Goal("capacity at the SLO, hardened / naive", "hardened", "naive", "knee_rps", 5.0, "sweep"),
        Goal(
            "capacity at the SLO, hardened / naive-row-lock",
            "hardened",
            "naive-row-lock",
            "knee_rps",
            5.0,
            "sweep",
        ),
    ),
    load_env={"LAB_LOAD_SKU": HOT_SKU},
    lab_env=ORDINARY_DEPENDENCIES,
)

RELAY = Scenario(
    name="relay",
    title="Order flow: the outbox relay's throughput and lag",
    question="At a steady rate of orders, does the relay publish every event, how fast, and how late?",
    what_to_watch=(
        "Each hardened order writes its event to the outbox in the order's own transaction; the relay "
        "publishes the rows to the broker and marks them. The audit reads the outbox: events published "
        "per second, and the lag from commit to publish (both timestamps PostgreSQL's own)."
    ),
    targets=(HARDENED,),
    locustfile=HERE / "users.py",
    reset=sale_reset(sku=RELAY_SKU, stock=NEVER_SOLD_OUT),
    audit=partial(audit_relay, sku=RELAY_SKU),
    mode="rate",
    open_user="HotSkuArrivals",
    closed_user="HotSkuBuyer",
    rate=100.0,
    load_env={"LAB_LOAD_SKU": RELAY_SKU},
    lab_env=ORDINARY_DEPENDENCIES,
)

ORDERS = BenchDesign(
    name="orders",
    scenarios={s.name: s for s in (FLASH_SALE, HOT_SKU_SCENARIO, RELAY)},
    headline=FLASH_SALE.name,
)
