"""The decisioning service: next-best-action with rules, contact policies and exploration."""
