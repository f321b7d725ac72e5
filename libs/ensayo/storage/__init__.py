"""SQL adapters (SQLAlchemy 2 Core): schema, migrations and repositories."""
