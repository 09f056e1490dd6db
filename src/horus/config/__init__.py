"""Loading and validating Horus config files (see ``horus.config.loader``)."""
