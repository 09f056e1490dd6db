"""Notifications: events written to a durable outbox first, delivered by a worker of their own, so a
channel that is down or hangs never holds up a check or a heal."""
