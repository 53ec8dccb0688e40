"""The lab's registry of services: variants apart from the services the variants call."""

from __future__ import annotations

from services.lab.registry import SERVICES

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
