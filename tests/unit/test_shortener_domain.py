"""The shortener's pure pieces: input checks, cache entries, expiry, error mapping."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from services.shortener.api import check_alias, check_long_url
from services.shortener.app import create_app
from services.shortener.cache import decode_entry, encode_entry
from services.shortener.codes import BASE62, is_reserved, random_code, random_codes
from services.shortener.errors import (
    AliasTaken,
    CodeSpaceExhausted,
    LinkGone,
    LinkNotFound,
    ShortenerError,
    TtlTooLong,
    problem_for,
)
from services.shortener.hotcache import Absent, HotKeyCache
from services.shortener.links import Target
from services.shortener.settings import ShortenerSettings

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "url",
    ["http://example.com", "https://EXAMPLE.com:8443/a/b?c=d#e", "HTTPS://127.0.0.1/", "http://[::1]:80/x"],
)
def test_absolute_http_urls_are_accepted_as_given(url: str) -> None:
    assert check_long_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:,x",
        "//example.com/",
        "mailto:a@b.c",
        "http:///x",
        "http://a b/",
        "http://é.fr/",
    ],
)
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"must|valid"):
        check_long_url(url)


def test_aliases_must_fit_the_pattern_and_not_be_reserved() -> None:
    assert check_alias("my_link-1") == "my_link-1"
    for alias in ("abc", "x" * 33, "a.b.c", "API", "Healthz"):
        with pytest.raises(ValueError, match=r"must be|reserved"):
            check_alias(alias)


def test_random_codes_are_base62_of_the_asked_length_and_never_reserved() -> None:
    codes = {random_code(length=7) for _ in range(1000)} | set(random_codes(count=20_000, length=7))
    assert len(codes) == 21_000
    assert all(len(code) == 7 and set(code) <= set(BASE62) and not is_reserved(code) for code in codes)


def test_every_base62_character_is_about_equally_likely() -> None:
    counts = Counter("".join(random_codes(count=20_000, length=7)))  # 140,000 characters
    expected = 140_000 / 62
    assert set(counts) == set(BASE62)
    assert all(abs(n - expected) < 0.15 * expected for n in counts.values())  # ~7 standard deviations


@pytest.mark.parametrize(
    "target",
    [
        None,
        Target(long_url="https://example.com/"),
        Target(long_url="https://example.com/?q=ü", expires_at=NOW),
        Target(long_url="", deleted=True),
    ],
)
def test_cache_entries_round_trip(target: Target | None) -> None:
    assert decode_entry(encode_entry(target).encode()) == target


def test_a_target_is_gone_when_deleted_or_expired() -> None:
    assert Target(long_url="u").gone_reason(now=NOW) is None
    assert Target(long_url="u", expires_at=NOW + timedelta(seconds=1)).gone_reason(now=NOW) is None
    assert Target(long_url="u", expires_at=NOW).gone_reason(now=NOW) == "expired"
    assert Target(long_url="u", deleted=True, expires_at=NOW).gone_reason(now=NOW) == "deleted"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (LinkNotFound("abc"), 404),
        (LinkGone("abc", reason="deleted"), 410),
        (AliasTaken("abcd"), 409),
        (TtlTooLong(ttl_seconds=2, max_ttl_seconds=1), 422),
        (CodeSpaceExhausted("full"), 503),
    ],
)
def test_every_domain_error_has_a_problem(error: ShortenerError, status: int) -> None:
    problem = problem_for(error)
    assert problem.status == status
    assert problem.detail == str(error)
    assert ("Retry-After" in problem.headers) == (status == 503)


def test_settings_come_from_lab_shortener_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_SHORTENER_CODE_LENGTH", "3")
    assert ShortenerSettings().shortener_code_length == 3


def test_an_unknown_variant_is_refused_before_anything_opens() -> None:
    with pytest.raises(ValueError, match="unknown shortener variant"):
        create_app("clever", ShortenerSettings())


def test_the_hot_cache_holds_entries_for_its_ttl_and_starts_over_when_full() -> None:
    hot = HotKeyCache(ttl_s=60, max_entries=2)
    assert isinstance(hot.get("a"), Absent)
    hot.put("a", None)  # a held "no such link" is not the same as nothing held
    hot.put("b", Target(long_url="u"))
    assert hot.get("a") is None
    assert hot.get("b") == Target(long_url="u")
    hot.put("c", Target(long_url="v"))
    assert isinstance(hot.get("a"), Absent)
    assert hot.get("c") == Target(long_url="v")
    hot.drop("c")
    assert isinstance(hot.get("c"), Absent)
    expired = HotKeyCache(ttl_s=0, max_entries=2)
    expired.put("a", Target(long_url="u"))
    assert isinstance(expired.get("a"), Absent)
