"""Floor 4, the Kafka column: topic setup, the outbox relay, the command intake, the Faust app."""
