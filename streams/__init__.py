"""Kafka-facing processes: topic setup, the outbox relay, the command intake, the Faust app."""
