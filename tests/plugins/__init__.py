"""Audits that exist only for the tests, registered through `OCCULTA_EXTRA_AUDITS` (tests/conftest.py)
exactly as a third-party audit would be: no project file names them."""
