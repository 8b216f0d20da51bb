"""The vendor envelope and the emulator's one error type."""

from __future__ import annotations

import contextvars
import json
import uuid
from typing import Any

from aiohttp import web

SUCCESS_MESSAGE = "调用成功"

#: Chinese messages of the vendor's error table, used as a prefix.
ERROR_TEXT: dict[str, str] = {
    "IMG.InvalidParameter": "参数错误",
    "IMG.DBGet.Fail": "数据查询失败",
    "IMG.DBUpdate.Fail": "数据更新失败",
    "IMG.DBGet.NoData": "资源不存在",
    "IMG.Internal.Error": "服务内部错误",
    "IMG.OperationFailed.ImageSize": "镜像大小不匹配",
    "IMG.OperationFailed.UploadError": "镜像上传失败",
    "IMG.OperationDenied.ActionNotMatchStatus": "当前状态无法操作",
    "IMG.OperationFailed.MinDiskSize": "最小磁盘需大于所选镜像大小",
    "IMG.OperationFailed.UploadNotAllowed": "当前镜像不允许上传",
    "IMG.OperationFailed.DownloadNotAllowed": "当前镜像不允许下载",
    "IMG.OperationFailed.DeleteNotAllowed": "当前镜像不允许删除",
    "IMG.OperationDenied.Identity": "对不起，您没有该资源的操作权限",
    "IMG.OperationDenied.AuthFail": "鉴权入参异常，请检查参数",
    "IMG.OperationFailed.ModifyMinDiskSize": "磁盘大小不能比原磁盘小",
    "IMG.OperationFailed.ActionNotMatch": "该镜像无法共享",
    "IMG.OperationFailed.DuplicateUserId": "含有重复用户ID",
    "IMG.OperationFailed.InvalidUserId": "无效的用户ID",
    "IMG.OperationFailed.AlreadyShared": "含有已共享用户",
    "IMG.OperationFailed.NotShared": "含有未共享用户",
    "IMG.OperationFailed.ImageIsShared": "无法删除已共享的镜像",
}

#: The id of the request being handled (set by the envelope middleware; a
#: context variable rather than request storage, for aiohttp < 3.14).
CURRENT_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ims_request_id", default=None
)


class ImsFault(Exception):
    """An ``IMG.*`` error answer: HTTP ``status`` (400 like the vendor) with
    the code and a message naming the field or rule at fault."""

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def invalid(field: str, problem: str) -> ImsFault:
    """``IMG.InvalidParameter`` naming *field*."""
    return ImsFault("IMG.InvalidParameter", f"参数错误: {field}: {problem}")


def fault(code: str, detail: str) -> ImsFault:
    prefix = ERROR_TEXT.get(code, code)
    return ImsFault(code, f"{prefix}: {detail}")


def new_request_id() -> str:
    rid = str(uuid.uuid4())
    CURRENT_REQUEST_ID.set(rid)
    return rid


def request_id(request: web.Request) -> str:
    """The id of the request being handled (made on first use)."""
    rid = CURRENT_REQUEST_ID.get()
    return rid if rid is not None else new_request_id()


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def envelope_response(
    request: web.Request, code: str, message: str, data: Any, *, status: int = 200
) -> web.Response:
    rid = request_id(request)
    body = {"requestId": rid, "code": code, "message": message, "data": data}
    return web.json_response(body, status=status, dumps=_dumps, headers={"x-request-id": rid})


def ok(request: web.Request, data: Any = None) -> web.Response:
    return envelope_response(request, "Success", SUCCESS_MESSAGE, data)


def error_response(request: web.Request, exc: ImsFault) -> web.Response:
    return envelope_response(request, exc.code, exc.message, None, status=exc.status)
