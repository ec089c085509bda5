"""Floor 2: PostgreSQL, the durable record (migrations, the event store, reference data, API keys)."""
