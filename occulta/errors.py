"""Domain errors with a stable code; the CLI prints them as one line, the API maps codes to HTTP."""

from __future__ import annotations


class OccultaError(Exception):
    """Base of every error a user can fix. `code` is stable and machine-readable."""

    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class CardError(OccultaError):
    code = "invalid_model_card"


class WeightsError(OccultaError):
    code = "invalid_weights"


class DatasetError(OccultaError):
    code = "invalid_dataset"


class AuditConfigError(OccultaError):
    code = "invalid_audit_config"


class PolicyError(OccultaError):
    code = "invalid_policy"


class NotFoundError(OccultaError):
    code = "not_found"


class ConflictError(OccultaError):
    code = "conflict"


class TooLargeError(OccultaError):
    code = "too_large"


class RateLimitedError(OccultaError):
    """A limit of the caller's tenant is reached (HTTP 429); `retry_after` says when to try again."""

    code = "too_many_audits"

    def __init__(self, message: str, *, retry_after: int = 30) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceError(OccultaError):
    """The service could not be reached or answered with a server error (CLI exit code 3)."""

    code = "service_error"
