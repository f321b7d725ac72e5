"""Redis adapters: snapshots, and (later) sticky assignments, bandit state, counters, streams."""
