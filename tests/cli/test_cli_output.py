"""Pure helpers: redaction, error descriptions, exception-group unwrapping."""

from __future__ import annotations

import pytest

from aioims.cli.context import unwrap
from aioims.cli.output import Output, describe_error, error_payload, human_size
from aioims.errors import NotFoundError, UploadFailedError


def test_redaction() -> None:
    out = Output()
    out.add_secret("s3cr3t-token")
    out.add_secret("ab")  # too short to redact safely: ignored
    assert out.redact("Bearer s3cr3t-token, again s3cr3t-token") == "Bearer ***, again ***"
    assert out.redact("ab") == "ab"


def test_describe_error_has_code_and_request_id() -> None:
    cause = NotFoundError("资源不存在", code="IMG.DBGet.NoData", request_id="rid-1",
                          http_status=400)
    text = describe_error(cause)
    assert text.startswith("IMG.DBGet.NoData: 资源不存在")
    assert "request id: rid-1" in text and "HTTP 400" in text
    wrapped = UploadFailedError(f"upload failed at done: {cause}", image_id="img-1",
                                stage="done", code=cause.code, request_id="rid-1")
    wrapped.__cause__ = cause
    text = describe_error(wrapped)
    assert "image img-1" in text and "stage done" in text
    assert text.count("rid-1") == 1 and "caused by" not in text
    payload = error_payload(wrapped)
    assert payload["code"] == "IMG.DBGet.NoData"
    assert payload["requestId"] == "rid-1"
    assert payload["imageId"] == "img-1" and payload["stage"] == "done"


def test_unwrap_exception_groups() -> None:
    try:
        eg = BaseExceptionGroup  # Python >= 3.11
    except NameError:  # 3.10: the backport anyio depends on
        from exceptiongroup import BaseExceptionGroup as eg
    inner = NotFoundError("x", code="IMG.DBGet.NoData")
    assert unwrap(eg("g", [eg("h", [inner])])) is inner
    assert isinstance(unwrap(eg("g", [ValueError(), KeyboardInterrupt()])), KeyboardInterrupt)
    group = eg("g", [ValueError(), TypeError()])
    assert unwrap(group) is group


@pytest.mark.parametrize(("n", "text"), [(None, "-"), (0, "0 B"), (1023, "1023 B"),
                                         (1024, "1.0 KiB"), (5 << 20, "5.0 MiB"),
                                         (3 << 30, "3.0 GiB")])
def test_human_size(n: int | None, text: str) -> None:
    assert human_size(n) == text
