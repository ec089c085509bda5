"""PostgreSQL: migrations, the event store, reference data and API keys."""
