from sqlalchemy.pool.impl import QueuePool

__all__ = ["QueuePool"]
