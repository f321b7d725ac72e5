"""Ensayo's gRPC services, one package each; behaviour lives in ``ensayo.*``."""
