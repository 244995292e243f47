"""``seedline ui``: a small web app over the workflow layer (runs, compare, sweeps, models, checks)."""
