"""Floor 4, the audit column: the auditors' tool: rebuild and verify case histories from the event store."""
