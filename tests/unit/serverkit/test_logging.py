"""Server logging: tracebacks carry no local variables (unit ids must never reach logs)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from ensayo.serverkit.logging import configure


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _fail_with_a_unit_in_scope() -> None:
    unit_id = "pii-unit-7f3a9c"  # a local of the failing frame
    attributes = {"email": "ana@example.com"}
    raise ValueError(f"bad input for {len(unit_id)} chars, {len(attributes)} attributes")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_tracebacks_leave_out_locals(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    """structlog's JSON tracebacks list every frame's locals by default, which put unit ids
    and attributes in the log of any failure (found in review); the frames remain."""
    configure("debug", fmt)
    try:
        _fail_with_a_unit_in_scope()
    except ValueError:
        structlog.get_logger().exception("rpc_internal_error")
    err = capsys.readouterr().err
    assert "_fail_with_a_unit_in_scope" in err  # the traceback is there
    assert "pii-unit-7f3a9c" not in err
    assert "ana@example.com" not in err
