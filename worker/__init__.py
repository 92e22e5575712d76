"""Celery workers: stage a job's inputs, run the audit battery, save results as they finish."""
