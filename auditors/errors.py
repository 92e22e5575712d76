"""Exceptions that cross layers: torch-free so the worker can catch them without importing torch."""


class AuditCancelled(Exception):  # noqa: N818  (a signal, not an error)
    """Raised by `AuditContext.check_cancelled()` when the job was cancelled; the runner records it."""
