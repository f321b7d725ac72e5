"""The analysis service: event intake and experiment, holdout and policy reports."""
