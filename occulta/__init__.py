"""Occulta: the shared domain (settings, storage, jobs, gate) and the `occulta` command.

Importing this package must stay cheap: no torch, fastapi or celery at import time.
"""

__version__ = "0.1.0"
