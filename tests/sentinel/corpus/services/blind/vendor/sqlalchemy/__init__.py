"""Stand-in for SQLAlchemy 2.0: an engine over a real TCP connection per pooled connection, a QueuePool
with SQLAlchemy's limits and messages, and text()."""

from sqlalchemy.engine.create import create_engine
from sqlalchemy.sql import text

__all__ = ["create_engine", "text"]
