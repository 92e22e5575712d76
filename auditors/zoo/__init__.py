"""Tiny architectures, synthetic tasks and training helpers: what the demo and the tests train on."""
