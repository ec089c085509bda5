"""Floor 3: the one command path (load, decide, append) and the runtime each process opens around it."""
