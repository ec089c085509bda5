"""Floor 4, the read column: read models in PostgreSQL built from the events (case views, timelines,
department figures), their queries and the monthly report."""
