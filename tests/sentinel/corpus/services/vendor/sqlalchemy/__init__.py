"""Stand-in for SQLAlchemy over sqlite3: ``create_engine``, ``text``, ``engine.begin()``, wrapped DBAPI errors."""

from sqlalchemy.engine import Engine, create_engine
from sqlalchemy.sql import text

__all__ = ["Engine", "create_engine", "text"]
