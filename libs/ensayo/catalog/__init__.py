"""The catalog domain: definitions, their validation, versions, audit and snapshots."""
