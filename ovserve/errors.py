"""Errors a calculator raises to refuse a request; the server turns them into OpenAI-shaped replies."""

from __future__ import annotations


class RequestError(Exception):
    """The request cannot be served as sent (or the model cannot serve it now).

    Becomes ``{"error": {"message", "type", "param", "code"}}`` with HTTP ``status``.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
        self.code = code
        self.type = type or error_type(status)

    def to_dict(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


#: Anthropic's error ``type`` for an HTTP status (the Messages API); any other 4xx is ``invalid_request_error``, any
#: other 5xx ``api_error``.
ANTHROPIC_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                         413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error",
                         504: "timeout_error", 529: "overloaded_error"}


def anthropic_error(error: RequestError, request_id: str | None = None) -> dict[str, object]:
    """The error in Anthropic's shape: ``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    kind = ANTHROPIC_ERROR_TYPES.get(error.status, "api_error" if error.status >= 500 else "invalid_request_error")
    body: dict[str, object] = {"type": "error", "error": {"type": kind, "message": error.message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def error_type(status: int) -> str:
    """OpenAI's ``type`` for an HTTP status."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


class ServerShuttingDownError(RequestError):
    """The server is stopping and ends what it could not finish: HTTP 503 (retry on another replica)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=503, code="server_shutting_down")


class ModelNotReadyError(RequestError):
    """The model exists but cannot serve right now (loading, or its engine is restarting): HTTP 503."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=503, code="model_not_ready")
