"""Records layer: manifests and the run tracking built on the store."""
