"""Apps layer: the command-line interface."""
