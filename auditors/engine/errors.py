"""Errors the engine raises when a strategy cannot apply to a model or an input is malformed."""


class EngineError(ValueError):
    """A request the engine refuses; the message says what to change."""
