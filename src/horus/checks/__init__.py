"""Check types: one module each, registered in ``horus.checks.registry``."""
