"""Execution layer: loading data, compiling specs into scikit-learn pipelines, and running them."""
