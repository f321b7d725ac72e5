"""The assignment service: A/B/n bucketing, holdouts, layers, targeting, sticky, bandits."""
