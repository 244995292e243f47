"""Storage layer: the metadata database and the content-addressed object store under ``.seedline/``."""
