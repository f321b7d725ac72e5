"""The ``ensayo`` command: run the platform locally, serve a service, apply and read objects."""
