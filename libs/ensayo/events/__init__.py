"""Events: what units did or were shown (exposures, decisions, outcomes, conversions)."""
