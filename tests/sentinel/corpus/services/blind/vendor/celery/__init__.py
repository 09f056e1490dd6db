"""Stand-in for Celery: an app with tasks, a worker's consumer, and Celery's worker log lines."""

from celery.app import Celery

__all__ = ["Celery"]
