"""Python client for Ensayo's services: channels with API keys, deadlines and retries."""

from __future__ import annotations

from ensayo.client.catalog import CatalogClient
from ensayo.client.channel import open_channel
from ensayo.client.decisioning import DecisioningClient

__all__ = ["CatalogClient", "DecisioningClient", "open_channel"]
