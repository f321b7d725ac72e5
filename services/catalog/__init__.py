"""The catalog service: the control plane holding definitions, versions and the audit log."""
