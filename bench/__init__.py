"""Benchmarks with their peers side by side; ``python -m bench`` runs them all."""
