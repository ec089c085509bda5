"""Floor 5, the embedded column: `suqiu up`, the broker and PostgreSQL from wheels, their supervisor and the demo."""
