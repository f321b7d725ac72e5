"""The per-call context: actor for audit, request fields on every log line of the call."""

from __future__ import annotations

import pytest

from ensayo.serverkit.context import (
    CallInfo,
    call_context_processor,
    current_actor,
    set_actor,
    set_call,
)

pytestmark = pytest.mark.unit


def test_outside_a_call_nothing_is_added_and_the_actor_is_local() -> None:
    set_call(None)
    set_actor("ignored")
    assert current_actor() == "local"
    assert call_context_processor(None, "info", {"event": "x"}) == {"event": "x"}


def test_a_call_tags_log_lines_and_carries_its_actor() -> None:
    set_call(CallInfo("rid-1", "/ensayo.v1.X/Y", "catalog"))
    try:
        set_actor("admin")
        assert current_actor() == "admin"
        line = call_context_processor(None, "info", {"event": "x", "rpc": "explicit"})
        assert line == {
            "event": "x",
            "request_id": "rid-1",
            "rpc": "explicit",  # a field the caller set wins
            "service": "catalog",
        }
    finally:
        set_call(None)
    assert current_actor() == "local"
