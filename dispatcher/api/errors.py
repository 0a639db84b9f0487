"""One JSON shape for every error the HTTP API answers: ``{"error": {"code", "message"[, "details"]}}``.

Covers the dispatcher's own exceptions, FastAPI's request validation, Starlette's 404/405, an
oversized body and anything unexpected (500, logged without request data).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dispatcher.api.schemas import ErrorOut
from dispatcher.errormap import translate
from dispatcher.errors import (
    CursorExpired,
    DataMismatch,
    DispatcherError,
    InvalidCursor,
    InvalidEventType,
    InvalidInput,
    InvalidSchema,
    InvalidState,
    InvalidURL,
    NotFound,
    NotPollable,
    NotReplicated,
    PayloadTooLarge,
    QuotaExceeded,
    StoreError,
    UnsafeTarget,
)

log = logging.getLogger(__name__)

# most specific first: the first class an exception is an instance of decides
DISPATCHER_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (PayloadTooLarge, 413, "payload_too_large"),
    (InvalidURL, 400, "invalid_url"),
    (UnsafeTarget, 400, "unsafe_target"),
    (InvalidEventType, 400, "invalid_event_type"),
    (InvalidCursor, 400, "invalid_cursor"),
    (InvalidSchema, 400, "invalid_schema"),
    (DataMismatch, 400, "data_mismatch"),
    (InvalidInput, 400, "invalid_input"),
    (NotFound, 404, "not_found"),
    (NotPollable, 409, "not_pollable"),
    (InvalidState, 409, "invalid_state"),
    (CursorExpired, 410, "cursor_expired"),
    (QuotaExceeded, 429, "quota_exceeded"),
    (NotReplicated, 503, "not_replicated"),
    (StoreError, 503, "store_unavailable"),
)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "invalid_state",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "store_unavailable",
}


# for the OpenAPI document: every error status answers the same shape
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": "error"} for code in (400, 401, 403, 404, 409, 413, 422, 429, 503)
}


class ApiError(Exception):
    """Raised by the API's own code to answer ``status`` with the stable error body."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """The one error body: ``{"error": {"code", "message"[, "details"]}, **extra}``."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body, **extra}, status_code=status, headers=headers)


def dispatcher_error_status(exc: Exception) -> tuple[int, str]:
    for cls, status, code in DISPATCHER_ERRORS:
        if isinstance(exc, cls):
            return status, code
    return 500, "internal_error"


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Where and what, without echoing the input (it may hold a secret)."""
    details = []
    for err in exc.errors():
        loc = [p for p in err.get("loc", ()) if p != "body"] or list(err.get("loc", ()))
        msg = str(err.get("msg", "")).removeprefix("Value error, ")  # pydantic's prefix for our own ValueErrors
        details.append({"loc": loc, "msg": msg, "type": str(err.get("type", ""))})
    return details


def _summary(details: list[dict[str, Any]]) -> str:
    parts = []
    for d in details[:3]:
        where = ".".join(str(p) for p in d["loc"])
        parts.append(f"{where}: {d['msg']}" if where else d["msg"])
    more = f" (and {len(details) - 3} more)" if len(details) > 3 else ""
    return "invalid request: " + "; ".join(parts) + more


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, headers=exc.headers)


async def _on_dispatcher_error(request: Request, exc: Exception) -> JSONResponse:
    status, code = dispatcher_error_status(exc)
    if status == 500:
        log.error("unexpected dispatcher error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return error_response(500, code, "internal error")
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, QuotaExceeded) else None
    return error_response(status, code, str(exc), headers=headers)


async def _on_foreign_error(request: Request, exc: Exception) -> JSONResponse:
    """A library's exception that ``dispatcher.errormap`` knows (Redis, the broker) answers as ours."""
    mapped = translate(exc)
    if mapped is None:
        return await _on_unexpected(request, exc)
    status, code = dispatcher_error_status(mapped)
    return error_response(status, code, f"{code.replace('_', ' ')}: {type(exc).__name__}")


async def _on_not_text(request: Request, exc: Exception) -> JSONResponse:
    """Input that is not valid UTF-8 text (a lone surrogate included) anywhere it reached."""
    return error_response(400, "invalid_input", "the request holds text that is not valid UTF-8")


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    ctype = request.headers.get("content-type")
    if ctype is not None and "json" not in ctype.split(";")[0].lower():
        return error_response(415, "unsupported_media_type", "send the body as JSON (Content-Type: application/json)")
    details = _validation_details(exc)
    return error_response(422, "validation_error", _summary(details), details)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal error")


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through ``error_response``."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(DispatcherError, _on_dispatcher_error)
    app.add_exception_handler(redis.RedisError, _on_foreign_error)
    app.add_exception_handler(UnicodeError, _on_not_text)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
