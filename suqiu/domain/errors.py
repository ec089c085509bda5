"""Domain rejections: every refusal names its rule, the state and the field it concerns."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A command the domain refuses; nothing is stored.

    `code` is one of: invalid_input, unauthorized, forbidden, not_found, invalid_state,
    conflict, duplicate_content. The shells map codes to HTTP statuses and Kafka results.
    """

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    def __reduce__(self) -> tuple[Any, ...]:
        # Refusals cross process boundaries (a parallel import); keep the code and details.
        return (_restore, (self.code, self.message, self.details))


def _restore(code: str, message: str, details: dict[str, Any]) -> DomainError:
    return DomainError(code, message, **details)


def invalid(field: str, message: str, **details: Any) -> DomainError:
    return DomainError("invalid_input", f"{field}: {message}", field=field, **details)
