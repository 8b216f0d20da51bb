"""RetryPolicy math, the filter builder, auth objects and IMS_* configuration."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioims import (
    Auth,
    CallableAuth,
    F,
    Filter,
    HeaderAuth,
    IMSSession,
    PreparedRequest,
    RetryPolicy,
    ValidationError,
)
from aioims.config import ENV_VARIABLES, normalize_endpoint, settings_from_env
from aioims.pagination import Clause, filter_value


@pytest.fixture(autouse=True)
def _no_profile_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """The user's own ~/.config/aioims/config.toml must not leak into these tests."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("IMS_CONFIG_FILE", raising=False)
    monkeypatch.delenv("IMS_PROFILE", raising=False)


# --- RetryPolicy --------------------------------------------------------------------


def test_defaults() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 3
    assert policy.jitter and policy.respect_retry_after
    assert policy.deadline is None
    assert RetryPolicy.disabled().max_attempts == 1


def test_exponential_caps() -> None:
    policy = RetryPolicy(initial_backoff=0.5, multiplier=2, max_backoff=3, jitter=False)
    assert [policy.compute_delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert policy.backoff_cap(0) == 0.0
    assert RetryPolicy(max_backoff=5).backoff_cap(10_000) == 5  # no overflow


def test_full_jitter_stays_in_range_and_varies() -> None:
    policy = RetryPolicy(initial_backoff=1, multiplier=2, max_backoff=100)
    rng = random.Random(7)
    for retry_number in range(1, 8):
        cap = policy.backoff_cap(retry_number)
        delays = [policy.compute_delay(retry_number, rng=rng) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8 and min(delays) < cap * 0.2  # really "full" jitter


@settings(max_examples=200, deadline=None)
@given(
    initial=st.floats(0, 10),
    multiplier=st.floats(1, 5),
    maximum=st.floats(0, 60),
    retry_number=st.integers(1, 200),
    seed=st.integers(0, 2**32),
)
def test_delay_bounds_property(
    initial: float, multiplier: float, maximum: float, retry_number: int, seed: int
) -> None:
    policy = RetryPolicy(initial_backoff=initial, multiplier=multiplier, max_backoff=maximum)
    delay = policy.compute_delay(retry_number, rng=random.Random(seed))
    assert 0 <= delay <= min(maximum, initial * multiplier ** min(retry_number - 1, 64)) + 1e-9


def test_retry_after_wins_and_is_capped() -> None:
    policy = RetryPolicy(initial_backoff=1, max_retry_after=30)
    assert policy.compute_delay(1, retry_after=4.5) == 4.5
    assert policy.compute_delay(3, retry_after=0) == 0
    assert policy.compute_delay(1, retry_after=3600) == 30
    ignoring = RetryPolicy(initial_backoff=1, jitter=False, respect_retry_after=False)
    assert ignoring.compute_delay(1, retry_after=20) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": 1.5},
        {"max_attempts": True},
        {"initial_backoff": -1},
        {"max_backoff": -0.1},
        {"multiplier": 0.5},
        {"deadline": 0},
        {"deadline": -1},
        {"max_retry_after": -1},
        {"initial_backoff": "1"},
    ],
)
def test_invalid_policies(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RetryPolicy(**kwargs)


def test_policy_is_frozen() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_attempts = 5  # type: ignore[misc]


# --- Filter --------------------------------------------------------------------------


def test_filter_builders() -> None:
    chained = Filter().name_contains("x").image_id_equals("img-kvvfk28fcjc0mt")
    combined = F.lk("name", "x") & F.eq("imageId", "img-kvvfk28fcjc0mt")
    assert str(chained) == str(combined) == "name:lk:x|imageId:eq:img-kvvfk28fcjc0mt"
    assert chained == combined
    assert str(Filter().contains("osType", "lin").equals("status", "active")) == (
        "osType:lk:lin|status:eq:active"
    )
    assert str(F.name_equals("a") & "imageId:lk:img-") == "name:eq:a|imageId:lk:img-"
    assert str("imageId:lk:img-" & F.name_equals("a")) == "imageId:lk:img-|name:eq:a"
    assert str(F.image_id_contains("kv")) == "imageId:lk:kv"


def test_filter_or_is_a_deprecated_and() -> None:
    with pytest.warns(DeprecationWarning, match="means AND"):
        old = F.lk("name", "x") | F.eq("imageId", "1")
    with pytest.warns(DeprecationWarning):
        old_str = F.lk("name", "x") | "imageId:eq:1"
    assert old == old_str == F.lk("name", "x") & F.eq("imageId", "1")
    with pytest.raises(TypeError):
        F.lk("name", "x") & 3  # type: ignore[operator]


def test_filter_is_immutable() -> None:
    base = F.lk("name", "x")
    extended = base.eq("imageId", "y")
    assert str(base) == "name:lk:x" and len(extended.clauses) == 2
    assert str(F) == "" and not F


def test_filter_values_may_hold_colons_and_unicode() -> None:
    assert str(F.lk("name", "a:b 镜像")) == "name:lk:a:b 镜像"
    parsed = Filter.parse("name:lk:a:b 镜像|imageId:eq:1|")
    assert parsed.clauses == (Clause("name", "lk", "a:b 镜像"), Clause("imageId", "eq", "1"))


@pytest.mark.parametrize(
    "make",
    [
        lambda: F.lk("name", "a|b"),
        lambda: F.lk("na|me", "a"),
        lambda: F.lk("", "a"),
        lambda: F.lk("a:b", "a"),
        lambda: F.where("name", "gt", "1"),
        lambda: F.lk("name", 3),
        lambda: Filter.parse("name-lk-x"),
    ],
)
def test_bad_filters(make: Any) -> None:
    with pytest.raises(ValidationError):
        make()


def test_filter_value() -> None:
    assert filter_value(None) is None
    assert filter_value("") is None
    assert filter_value(F) is None
    assert filter_value("name:lk:1|imageId:eq:1|") == "name:lk:1|imageId:eq:1|"
    assert filter_value(F.eq("imageId", "1")) == "imageId:eq:1"
    with pytest.raises(ValidationError):
        filter_value(5)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(st.characters(blacklist_characters="|:"), min_size=1, max_size=8),
            st.sampled_from(["lk", "eq"]),
            st.text(st.characters(blacklist_characters="|"), max_size=8),
        ),
        max_size=4,
    )
)
def test_filter_round_trip(clauses: list[tuple[str, str, str]]) -> None:
    flt = Filter(tuple(Clause(*c) for c in clauses))
    assert Filter.parse(str(flt)) == Filter(tuple(c for c in flt.clauses if str(c)))


# --- auth -------------------------------------------------------------------------------


def _request() -> PreparedRequest:
    return PreparedRequest(method="POST", url="https://h/api/image/v1/x", body=b"{}")


async def test_header_auth() -> None:
    auth = HeaderAuth({"Authorization": "Bearer s3cr3t", "X-Key": "k3y"})
    request = _request()
    await auth.apply(request)
    assert request.headers == {"Authorization": "Bearer s3cr3t", "X-Key": "k3y"}
    assert isinstance(auth, Auth)
    for text in (repr(auth), str(auth)):
        assert "s3cr3t" not in text and "k3y" not in text
        assert "Authorization" in text and "***" in text
    assert auth.header_names == ["Authorization", "X-Key"]
    bearer = HeaderAuth.bearer("tok")
    await bearer.apply(request)
    assert request.headers["Authorization"] == "Bearer tok"


def test_header_auth_rejects_bad_headers() -> None:
    with pytest.raises(ValueError):
        HeaderAuth({"X": "a\r\nInjected: 1"})
    with pytest.raises(TypeError):
        HeaderAuth({"X": 1})  # type: ignore[dict-item]


async def test_callable_auth_sync_and_async() -> None:
    def sync_hook(request: PreparedRequest) -> None:
        request.params["sig"] = str(len(request.body))

    async def async_hook(request: PreparedRequest) -> None:
        request.headers["X-Sig"] = request.method + " " + request.url

    request = _request()
    await CallableAuth(sync_hook).apply(request)
    await CallableAuth(async_hook).apply(request)
    assert request.params == {"sig": "2"}
    assert request.headers["X-Sig"] == "POST https://h/api/image/v1/x"
    assert request.full_url == "https://h/api/image/v1/x?sig=2"
    assert "sync_hook" in repr(CallableAuth(sync_hook))
    with pytest.raises(TypeError):
        CallableAuth("nope")  # type: ignore[arg-type]


def test_session_rejects_non_auth() -> None:
    with pytest.raises(TypeError):
        IMSSession("https://h", "r", auth="Bearer x")  # type: ignore[arg-type]


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("https://ims.example.com", "https://ims.example.com/api/image/v1"),
        ("https://ims.example.com/", "https://ims.example.com/api/image/v1"),
        ("ims.example.com:8443", "https://ims.example.com:8443/api/image/v1"),
        ("http://127.0.0.1:8080/api/image/v1", "http://127.0.0.1:8080/api/image/v1"),
        ("http://127.0.0.1:8080/api/image/v1/", "http://127.0.0.1:8080/api/image/v1"),
        ("https://gw.example.com/ims", "https://gw.example.com/ims/api/image/v1"),
    ],
)
def test_normalize_endpoint(endpoint: str, expected: str) -> None:
    assert normalize_endpoint(endpoint) == expected


@pytest.mark.parametrize("endpoint", ["", "   ", "ftp://h", "https://", "https://h/?q=1"])
def test_bad_endpoints(endpoint: str) -> None:
    with pytest.raises(ValidationError):
        normalize_endpoint(endpoint)


def test_settings_from_env_full() -> None:
    settings, token = settings_from_env(
        {
            "IMS_ENDPOINT": "https://ims.example.com",
            "IMS_REGION": "region0",
            "IMS_TOKEN": "tok",
            "IMS_CA_BUNDLE": "/etc/ims/ca.pem",
            "IMS_INSECURE": "no",
            "IMS_TIMEOUT": "12.5",
            "IMS_MAX_ATTEMPTS": "6",
            "IMS_RETRY_DEADLINE": "90",
            "IMS_BACKOFF_INITIAL": "0.1",
            "IMS_BACKOFF_MAX": "4",
            "UNRELATED": "x",
        }
    )
    assert token == "tok"
    assert settings.base_url == "https://ims.example.com/api/image/v1"
    assert settings.region == "region0"
    assert settings.ca_bundle == "/etc/ims/ca.pem" and settings.verify_ssl
    assert settings.timeout == 12.5
    assert settings.retry == RetryPolicy(
        max_attempts=6, deadline=90, initial_backoff=0.1, max_backoff=4
    )


def test_settings_from_env_minimal_and_empty_values() -> None:
    settings, token = settings_from_env(
        {"IMS_ENDPOINT": "h", "IMS_REGION": "r", "IMS_TOKEN": "", "IMS_TIMEOUT": ""}
    )
    assert token is None and settings.timeout == 60 and settings.retry == RetryPolicy()


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({}, "IMS_ENDPOINT"),
        ({"IMS_ENDPOINT": "h"}, "IMS_REGION"),
        ({"IMS_REGION": "r"}, "IMS_ENDPOINT"),
        ({"IMS_ENDPOINT": "h", "IMS_REGION": "r", "IMS_TIMEOUT": "soon"}, "IMS_TIMEOUT"),
        ({"IMS_ENDPOINT": "h", "IMS_REGION": "r", "IMS_TIMEOUT": "-1"}, "IMS_TIMEOUT"),
        ({"IMS_ENDPOINT": "h", "IMS_REGION": "r", "IMS_INSECURE": "maybe"}, "IMS_INSECURE"),
        ({"IMS_ENDPOINT": "h", "IMS_REGION": "r", "IMS_MAX_ATTEMPTS": "2.5"}, "IMS_MAX_ATTEMPTS"),
        ({"IMS_ENDPOINT": "h", "IMS_REGION": "r", "IMS_MAX_ATTEMPTS": "0"}, "IMS_MAX_ATTEMPTS"),
        ({"IMS_ENDPOINT": "h", "IMS_REGION": "r", "IMS_RETRY_DEADLINE": "0"},
         "IMS_RETRY_DEADLINE"),
    ],
)
def test_settings_from_env_errors(env: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        settings_from_env(env)
    assert info.value.field == field


@pytest.mark.parametrize("raw", ["1", "true", "Yes", "ON"])
def test_insecure_turns_verification_off(raw: str) -> None:
    env = {"IMS_ENDPOINT": "h", "IMS_REGION": "r", "IMS_INSECURE": raw,
           "IMS_CA_BUNDLE": "/ca.pem"}  # fmt: skip
    settings, _ = settings_from_env(env)
    assert settings.verify_ssl is False and settings.ca_bundle is None


@pytest.mark.parametrize("raw", ["0", "false", "No", "OFF"])
def test_deprecated_verify_ssl_still_works(raw: str) -> None:
    with pytest.warns(DeprecationWarning, match="IMS_VERIFY_SSL is deprecated"):
        settings, _ = settings_from_env(
            {"IMS_ENDPOINT": "h", "IMS_REGION": "r", "IMS_VERIFY_SSL": raw}
        )
    assert settings.verify_ssl is False


def test_deprecated_verify_ssl_loses_to_the_new_name() -> None:
    env = {"IMS_ENDPOINT": "h", "IMS_REGION": "r", "IMS_VERIFY_SSL": "false",
           "IMS_INSECURE": "false"}  # fmt: skip
    with pytest.warns(DeprecationWarning):
        settings, _ = settings_from_env(env)
    assert settings.verify_ssl is True
    with pytest.warns(DeprecationWarning), pytest.raises(ValidationError) as info:
        settings_from_env({"IMS_ENDPOINT": "h", "IMS_REGION": "r", "IMS_VERIFY_SSL": "maybe"})
    assert info.value.field == "IMS_VERIFY_SSL"


def test_env_variables_are_documented() -> None:
    assert {
        "IMS_ENDPOINT", "IMS_REGION", "IMS_TOKEN", "IMS_CA_BUNDLE", "IMS_VERIFY_SSL",
        "IMS_TIMEOUT", "IMS_MAX_ATTEMPTS", "IMS_INSECURE", "IMS_TENANT_ID",
        "IMS_DEPARTMENT_ID", "IMS_RESOURCE_GROUP_ID", "IMS_PROFILE", "IMS_CONFIG_FILE",
    } <= set(ENV_VARIABLES)  # fmt: skip
    assert "deprecated" in ENV_VARIABLES["IMS_VERIFY_SSL"]


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMS_ENDPOINT", "https://env.example.com")
    monkeypatch.setenv("IMS_REGION", "region7")
    monkeypatch.setenv("IMS_TOKEN", "tok-env-secret")
    ims = IMSSession.from_env()
    assert ims.endpoint == "https://env.example.com/api/image/v1"
    assert ims.region == "region7"
    assert "tok-env-secret" not in repr(ims)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"region": ""},
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": "5"},
        {"verify_ssl": False, "ca_bundle": "/ca.pem"},
        {"retry": 3},
    ],
)
def test_session_rejects_bad_settings(kwargs: dict[str, Any]) -> None:
    args = {"region": "r", **kwargs}
    with pytest.raises(ValidationError):
        IMSSession("https://h", **args)


def test_with_options_validation() -> None:
    ims = IMSSession("https://h", "r")
    with pytest.raises(ValidationError):
        ims.with_options(timeout=-1)
    with pytest.raises(ValidationError):
        ims.with_options(retry="x")  # type: ignore[arg-type]
    view = ims.with_options(timeout=2)
    assert view.timeout == 2 and ims.timeout == 60 and view.retry is ims.retry
