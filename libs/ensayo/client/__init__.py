"""Python client for Ensayo's services: channels with API keys, deadlines and retries."""

from __future__ import annotations

from ensayo.client.analysis import AnalysisClient
from ensayo.client.assignment import AssignmentClient
from ensayo.client.catalog import CatalogClient
from ensayo.client.channel import open_channel
from ensayo.client.decisioning import DecisioningClient
from ensayo.client.events import EventsClient

__all__ = [
    "AnalysisClient",
    "AssignmentClient",
    "CatalogClient",
    "DecisioningClient",
    "EventsClient",
    "open_channel",
]
