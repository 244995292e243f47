"""Core layer: specs, seeding, fingerprints, environment capture and errors. No storage, no CLI."""
