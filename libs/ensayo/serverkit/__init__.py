"""Server plumbing shared by every service: config, logging, errors, auth, metrics, lifecycle."""
