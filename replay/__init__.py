"""The auditors' tool: rebuild and verify case histories from the event store."""
