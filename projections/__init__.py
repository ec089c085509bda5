"""Read models in PostgreSQL built from the events (case views, timelines, department load)."""
