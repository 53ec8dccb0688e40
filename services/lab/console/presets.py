"""What the live console offers for each design: the lessons as presets, the settings a class tunes
and the faults it presses, as data. A preset is a bench scenario (:mod:`loadtests.designs`) loaded
the way a class watches it: short, every chosen variant at once with the identical load.

Everything a page sends names one of these; anything else is refused (``422``) before it starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import Annotated, Any, get_args

from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from loadtests.designs import DESIGNS
from loadtests.engine.scenario import Scenario
from services.lab.console.errors import CatalogueError


@dataclass(frozen=True)
class Preset:
    """A lesson: a bench ``scenario`` of ``design`` in ``mode`` (``rate``: ``rate`` requests a
    second; ``sweep``: ``steps`` of ``step_s``; ``closed``: the scenario's users), for
    ``duration_s``. ``settings`` are what the lesson needs of the services (beyond the scenario's
    own), ``load_env`` what it asks of the generator."""

    name: str
    title: str
    lesson: str
    design: str
    scenario: str
    mode: str
    duration_s: int = 20
    rate: float | None = None
    steps: tuple[float, ...] = ()
    step_s: int = 4
    settings: Mapping[str, str] = field(default_factory=dict)
    load_env: Mapping[str, str] = field(default_factory=dict)

    def bench_scenario(self) -> Scenario:
        return DESIGNS[self.design].scenarios[self.scenario]

    def targets(self) -> list[str]:
        """Every target the preset can run: the scenario's, and the learner's variant where it has one."""
        scenario = self.bench_scenario()
        return [t.label for t in scenario.targets] + ([scenario.learner.label] if scenario.learner else [])

    def default_targets(self) -> list[str]:
        return [label for label in ("naive", "hardened") if label in self.targets()]

    @property
    def run_s(self) -> float:
        return len(self.steps) * self.step_s if self.mode == "sweep" else self.duration_s


@dataclass(frozen=True)
class Setting:
    """A ``LAB_*`` setting a class changes live; the ``restarts`` components read it at start-up."""

    name: str
    label: str
    restarts: tuple[str, ...]
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    def checked(self, value: str) -> str:
        """``value`` as the setting will hold it, or :class:`CatalogueError` saying what it accepts."""
        value = value.strip()
        if self.choices:
            if value not in self.choices:
                raise CatalogueError(f"{self.name} is one of {', '.join(self.choices)}, not {value!r}")
            return value
        try:
            number = float(value)
        except ValueError:
            raise CatalogueError(f"{self.name} is a number, not {value!r}") from None
        if not self.minimum <= number <= self.maximum:  # type: ignore[operator]
            raise CatalogueError(f"{self.name} is from {self.minimum:g} to {self.maximum:g}, not {value}")
        return f"{number:g}"


@dataclass(frozen=True)
class Fault:
    component: str
    label: str
    actions: tuple[str, ...]


@dataclass(frozen=True)
class ConsoleDesign:
    name: str
    title: str
    settings_class: str  # module:Class of the design's settings, whose defaults the page shows
    presets: Mapping[str, Preset]
    settings: Mapping[str, Setting]
    faults: tuple[Fault, ...]
    invariants: Mapping[str, str]  # the live counts (each correct at 0) and how the page names them

    def value_of(self, setting: Setting, environ: Mapping[str, str]) -> str:
        """The setting as the design's services start with it now: the environment's, or the default."""
        if setting.name in environ:
            return environ[setting.name]
        default = self._field(setting).default
        return f"{default:g}" if isinstance(default, float) else str(default)

    def checked(self, setting: Setting, value: str) -> str:
        """``value`` within the console's bounds and as the design's own settings accept it (an
        integer where the design reads one): a service is never restarted with what it refuses."""
        checked = setting.checked(value)
        field = self._field(setting)
        # The field's type with its constraints (ge, le…), built at run time: mypy sees no type here.
        constrained = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
        adapter: TypeAdapter[Any] = TypeAdapter(constrained)  # type: ignore[arg-type]
        try:
            adapter.validate_python(checked)
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise CatalogueError(f"{setting.name} cannot be {checked!r}: {reason}") from None
        return checked

    def _field(self, setting: Setting) -> FieldInfo:
        module, _, name = self.settings_class.partition(":")
        fields: dict[str, FieldInfo] = getattr(import_module(module), name).model_fields
        return fields[setting.name.removeprefix("LAB_").lower()]


def _literal(module: str, name: str) -> tuple[str, ...]:
    """The values a design's settings accept for a ``Literal`` type, read from the design itself."""
    return tuple(get_args(getattr(import_module(module), name)))


def _by_name(*items: Any) -> dict[str, Any]:
    return {item.name: item for item in items}


def _orders() -> ConsoleDesign:
    return ConsoleDesign(
        name="orders",
        title="Order flow",
        settings_class="services.orders.settings:OrdersSettings",
        presets=_by_name(
            Preset(
                "flash-sale",
                "Flash sale",
                "100 units, 400 buyers who each want one and retry once when the answer is late. The "
                "naive order reads the stock, waits for the inventory service, and writes back: it "
                "oversells; its retries are new orders, charged again. Press 'pause broker' mid-sale: "
                "the hardened outbox holds the events until the broker is back.",
                design="orders",
                scenario="flash-sale",
                mode="closed",
            ),
            Preset(
                "hot-sku",
                "Hot SKU",
                "Every order is for one SKU that never sells out, at a rising rate. The naive order "
                "calls inventory and payment on its request path; watch its p99 climb and its "
                "goodput flatten while the hardened one keeps up.",
                design="orders",
                scenario="hot-sku",
                mode="sweep",
                steps=(20.0, 40.0, 60.0, 80.0, 100.0),
            ),
        ),
        settings=_by_name(
            Setting(
                "LAB_PAYMENT_GATEWAY_LATENCY_MS",
                "payment gateway latency, ms",
                ("orders-gateway",),
                minimum=0,
                maximum=5000,
            ),
            Setting(
                "LAB_INVENTORY_DELAY_MS",
                "inventory service delay, ms",
                # the row-locked naive target's own inventory service too, when a run served it
                ("orders-inventory", "orders-inventory-row-lock"),
                minimum=0,
                maximum=2000,
            ),
            Setting(
                "LAB_ORDERS_NAIVE_LOCKING",
                "naive lock setting (the inventory service's stock read)",
                ("orders-inventory",),
                choices=_literal("services.orders.settings", "NaiveLocking"),
            ),
        ),
        faults=(
            Fault("kafka", "broker", ("pause", "resume")),
            Fault("postgres", "PostgreSQL", ("pause", "resume")),
            Fault("redis", "Valkey", ("pause", "resume")),
            Fault("orders-relay", "relay", ("kill",)),
            Fault("orders-payments", "payments consumer", ("kill",)),
            Fault("orders-hardened", "hardened service", ("restart",)),
        ),
        invariants={
            "oversold_units": "Oversold units",
            "customers_charged_more_than_once": "Customers charged twice",
            "customers_with_multiple_orders": "Customers with two orders",
        },
    )


def _ratelimit() -> ConsoleDesign:
    return ConsoleDesign(
        name="ratelimit",
        title="Rate limiter",
        settings_class="services.ratelimit.settings:RateLimitSettings",
        presets=_by_name(
            Preset(
                "hot-keys",
                "Hot API key burst",
                "Two hot API keys hammer a service of two worker processes, 100 requests a minute "
                "each. The naive limiter counts in each process: every hot key gets its quota once "
                "per worker. The hardened one counts in Valkey, once for everybody.",
                design="ratelimit",
                scenario="hot-keys",
                mode="rate",
                rate=400.0,
                settings={"LAB_RATELIMIT_WINDOW_S": "60"},
            ),
            Preset(
                "window-edge",
                "Window edge",
                "One hot key, a 10 s window. The naive fixed window starts counting again at every "
                "window's edge, so the end of one window and the start of the next admit a double "
                "burst; the hardened sliding window never admits more than the limit in any 10 s.",
                design="ratelimit",
                scenario="hot-keys",
                mode="rate",
                rate=200.0,
                duration_s=30,
                settings={"LAB_RATELIMIT_WINDOW_S": "10"},
                load_env={"LAB_LOAD_HOT_KEYS": "1"},
            ),
        ),
        settings=_by_name(
            Setting(
                "LAB_RATELIMIT_ALGORITHM",
                "hardened algorithm",
                ("ratelimit-hardened",),
                choices=_literal("services.ratelimit.settings", "Algorithm"),
            ),
            Setting(
                "LAB_RATELIMIT_ON_REDIS_ERROR",
                "failure policy",
                ("ratelimit-hardened",),
                choices=_literal("services.ratelimit.settings", "FailureMode"),
            ),
            Setting(
                "LAB_RATELIMIT_WINDOW_S",
                "window, s",
                ("ratelimit-naive", "ratelimit-hardened"),
                minimum=1,
                maximum=3600,
            ),
        ),
        faults=(
            Fault("redis", "Valkey", ("pause", "resume")),
            Fault("ratelimit-hardened", "hardened service", ("restart",)),
        ),
        invariants={
            "over_admitted_requests": "Requests over the limit",
            "degraded_checks": "Checks skipped (store down)",
        },
    )


def _shortener() -> ConsoleDesign:
    return ConsoleDesign(
        name="shortener",
        title="URL shortener",
        settings_class="services.shortener.settings:ShortenerSettings",
        presets=_by_name(
            Preset(
                "viral",
                "Viral link",
                "Every request redirects the same code. The naive variant reads and updates the same "
                "PostgreSQL row each time; the hardened one answers from Valkey and adds clicks up "
                "in memory. Watch the database reads.",
                design="shortener",
                scenario="viral",
                mode="rate",
                rate=200.0,
            ),
            Preset(
                "zipf",
                "Zipf redirects",
                "1,000 links, redirected with Zipf popularity. The cache's promise is at most one "
                "database read per link (its cold miss); the naive variant reads on every redirect.",
                design="shortener",
                scenario="zipf",
                mode="rate",
                rate=200.0,
            ),
        ),
        settings=_by_name(
            Setting(
                "LAB_SHORTENER_DB_LOOKUP_DELAY_MS",
                "database lookup delay, ms",
                ("shortener-naive", "shortener-hardened"),
                minimum=0,
                maximum=2000,
            ),
            Setting(
                "LAB_SHORTENER_HOT_CACHE_TTL_MS",
                "hardened hot cache, ms (0: off)",
                ("shortener-hardened",),
                minimum=0,
                maximum=60_000,
            ),
        ),
        faults=(
            Fault("redis", "Valkey", ("pause", "resume")),
            Fault("postgres", "PostgreSQL", ("pause", "resume")),
            Fault("shortener-hardened", "hardened service", ("restart",)),
        ),
        invariants={"database_reads_beyond_one_per_link": "Database reads beyond one a link"},
    )


def console_designs() -> dict[str, ConsoleDesign]:
    """Every design the console has a page for, in the order of its navigation."""
    return {d.name: d for d in (_orders(), _ratelimit(), _shortener()) if d.name in DESIGNS}


def design_of(designs: Mapping[str, ConsoleDesign], name: str) -> ConsoleDesign:
    if name not in designs:
        raise CatalogueError(f"unknown design {name!r}; choose one of {', '.join(designs)}")
    return designs[name]


def preset_of(design: ConsoleDesign, name: str) -> Preset:
    if name not in design.presets:
        raise CatalogueError(
            f"unknown preset {name!r} of {design.name}; choose one of {', '.join(design.presets)}"
        )
    return design.presets[name]


def checked_targets(preset: Preset, targets: list[str]) -> tuple[str, ...]:
    """One to three distinct targets the preset can run (at once, with the identical load)."""
    chosen = tuple(dict.fromkeys(targets)) or tuple(preset.default_targets())
    unknown = [t for t in chosen if t not in preset.targets()]
    if unknown:
        raise CatalogueError(f"unknown target(s) {unknown} of {preset.name}; choose among {preset.targets()}")
    if len(chosen) > MAX_TARGETS:
        raise CatalogueError(f"at most {MAX_TARGETS} targets at once (they share this machine's cores)")
    return chosen


MAX_TARGETS = 3


def setting_of(designs: Mapping[str, ConsoleDesign], name: str) -> tuple[ConsoleDesign, Setting]:
    """The setting called ``name``, and the design whose settings hold it."""
    for design in designs.values():
        if name in design.settings:
            return design, design.settings[name]
    known = sorted(n for d in designs.values() for n in d.settings)
    raise CatalogueError(f"the console does not tune {name!r}; it tunes {', '.join(known)}")


def fault_of(design: ConsoleDesign, component: str, action: str) -> Fault:
    fault = next((f for f in design.faults if f.component == component), None)
    if fault is None or action not in fault.actions:
        offered = ", ".join(f"{f.component}:{a}" for f in design.faults for a in f.actions)
        raise CatalogueError(f"no fault {component}:{action} on the {design.name} page; it offers {offered}")
    return fault


def describe(design: ConsoleDesign, environ: Mapping[str, str]) -> dict[str, Any]:
    """The design as the page reads it (``GET /api/designs``), with its settings as they stand."""
    return {
        "name": design.name,
        "title": design.title,
        "presets": [
            {
                "name": p.name,
                "title": p.title,
                "lesson": p.lesson,
                "targets": p.targets(),
                "default_targets": p.default_targets(),
                "duration_s": p.run_s,
            }
            for p in design.presets.values()
        ],
        "settings": [
            {
                "name": s.name,
                "label": s.label,
                "value": design.value_of(s, environ),
                "choices": list(s.choices) or None,
                "min": s.minimum,
                "max": s.maximum,
                "restarts": list(s.restarts),
            }
            for s in design.settings.values()
        ],
        "faults": [
            {"component": f.component, "label": f.label, "actions": list(f.actions)} for f in design.faults
        ],
        "invariants": [{"name": n, "label": label} for n, label in design.invariants.items()],
    }
