"""Floor 1: what every process stands on (settings, logs, the clock, metrics,
child processes, TOML files, the SLA policy and its business calendar)."""
