"""Routers per domain; `v1` bundles them behind authentication."""
