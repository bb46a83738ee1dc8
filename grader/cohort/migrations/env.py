"""Alembic environment: run by `gradebook.open_gradebook` with the connection it passes in `config.attributes`."""

from alembic import context

from grader.cohort.gradebook import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
