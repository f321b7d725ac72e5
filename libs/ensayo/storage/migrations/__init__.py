"""Alembic migrations of Ensayo's SQL schema (a package so wheels and images ship them)."""
