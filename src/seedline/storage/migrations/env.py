"""Alembic environment: migrations run on the connection seedline hands over."""

from __future__ import annotations

from alembic import context

from seedline.storage.metadata import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - seedline always passes its connection
    raise RuntimeError(
        "seedline's migrations must be run through seedline.storage.metadata.upgrade"
    )
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
