"""The one error type the service raises; each door maps it to its own shape."""

from __future__ import annotations

#: Ids are 32-bit integer columns; a larger one names nothing (and must not reach the driver).
MAX_ID = 2**31 - 1


def valid_id(value: object) -> bool:
    """An integer (not a bool) that can be an id."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID


class ChatError(Exception):
    """A refused operation: ``code`` is stable for clients, ``status`` is the HTTP equivalent."""

    def __init__(self, code: str, message: str, status: int,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        #: Seconds after which a retry may succeed (429, 503); REST adds ``Retry-After``.
        self.retry_after = retry_after

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def not_found(what: str) -> ChatError:
    return ChatError("not_found", f"{what} not found", 404)


def forbidden(message: str = "Access denied") -> ChatError:
    return ChatError("forbidden", message, 403)


def invalid(message: str) -> ChatError:
    return ChatError("invalid", message, 422)


def conflict(message: str) -> ChatError:
    return ChatError("conflict", message, 409)


def too_large(message: str) -> ChatError:
    return ChatError("too_large", message, 413)


def unauthorized(message: str = "Authentication required") -> ChatError:
    return ChatError("unauthorized", message, 401)


#: What a client is told to wait (``Retry-After``) after a fault of the server's own, such as
#: the database being away: long enough not to hammer it, short enough to notice it is back.
UNAVAILABLE_RETRY_SECONDS = 2.0


def unavailable(
    message: str = "The service is temporarily unavailable; retry later",
    retry_after: float = UNAVAILABLE_RETRY_SECONDS,
) -> ChatError:
    """A fault of the server (not of the request): 503, to be retried (backend/service/faults.py
    turns database faults into it)."""
    return ChatError("unavailable", message, 503, retry_after)


def rate_limited(retry_after: float, what: str = "messages") -> ChatError:
    """A refusal saying when to retry (``retry_after`` seconds; REST adds ``Retry-After``)."""
    return ChatError("rate_limited", f"Too many {what}; retry after {retry_after:.2f} seconds",
                     429, retry_after)
