"""Domain rejections: every refusal names its rule, the state and the field it concerns."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A command the domain refuses; nothing is stored.

    `code` is one of: invalid_input, unauthorized, forbidden, not_found, invalid_state,
    conflict, idempotency_mismatch, too_large, calendar_unknown. The shells map codes to HTTP
    statuses and Kafka results.
    """

    # The deployment's configuration, not the caller, is at fault: the shells log it as an error.
    configuration = False

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    def __reduce__(self) -> tuple[Any, ...]:
        # Refusals cross process boundaries (a parallel import); keep the kind, code and details.
        return (_restore, (type(self), self.code, self.message, self.details))


def _restore(kind: type[DomainError], code: str, message: str, details: dict[str, Any]) -> DomainError:
    error = kind.__new__(kind)
    DomainError.__init__(error, code, message, **details)
    return error


def invalid(field: str, message: str, **details: Any) -> DomainError:
    return DomainError("invalid_input", f"{field}: {message}", field=field, **details)
