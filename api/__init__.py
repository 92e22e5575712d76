"""The HTTP face of Occulta: FastAPI routers over the `occulta` service functions."""
