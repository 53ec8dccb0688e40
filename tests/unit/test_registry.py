"""The lab's registry of services: variants apart from the services the variants call."""

from __future__ import annotations

import pytest

from services.lab.registry import MAX_INSTANCES, SERVICES, WORKERS, parse_scale, scale_workers

VARIANT_NAMES = ("naive", "hardened")


def test_every_design_registers_exactly_its_naive_and_hardened_variants() -> None:
    designs = {spec.design for spec in SERVICES}
    variants = {(spec.design, spec.variant) for spec in SERVICES if spec.kind == "variant"}

    assert variants == {(design, name) for design in designs for name in VARIANT_NAMES}


def test_a_supporting_service_is_no_variant_and_is_found_by_the_variants_through_its_url_setting() -> None:
    supporting = [spec for spec in SERVICES if spec.kind == "supporting"]

    assert supporting, "the order flow's inventory service and payment gateway are supporting services"
    assert all(spec.variant not in VARIANT_NAMES for spec in supporting)
    assert all(spec.url_setting for spec in supporting)


def test_scale_names_each_extra_instance_of_a_worker_after_the_first() -> None:
    workers = scale_workers(WORKERS, parse_scale("relay=2, payments=3"))

    assert [spec.name for spec in workers] == [
        "orders-relay",
        "orders-relay-2",
        "orders-payments",
        "orders-payments-2",
        "orders-payments-3",
        "orders-notifications",
    ]
    assert {spec.target for spec in workers if spec.role == "payments"} == {
        "services.orders.consumers:run_payments"
    }


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("nope=2", "cannot scale 'nope'"),
        ("relay=0", "must be 1 to"),
        ("relay", "must be 1 to"),
        ("relay=two", "must be 1 to"),
        (f"relay={MAX_INSTANCES + 1}", "must be 1 to"),
        ("relay=2,", "cannot scale ''"),
    ],
)
def test_a_scale_that_names_no_worker_or_no_count_from_one_is_refused_in_one_line(
    text: str, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason) as refused:
        parse_scale(text)

    assert "\n" not in str(refused.value)
