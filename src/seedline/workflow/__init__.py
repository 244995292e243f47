"""Workflow layer: reproduce, diff, check and sweeps build on runs here."""
