"""Service functions per domain (Dispatch's `service.py`): the API and the CLI call these with keyword
arguments; they take a session and return rows or raise domain errors, and never know about HTTP."""
