"""numpy.core (numpy 1.x)."""
