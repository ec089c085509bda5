"""Floor 5, the command-line column: `suqiu` and its subcommands (import, org, keys, report, …)."""
