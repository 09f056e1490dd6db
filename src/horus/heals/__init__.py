"""Heal actions: one module each, registered in ``horus.heals.registry``."""
