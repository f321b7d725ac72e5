"""Decision ids: the unit's hash tag, then 64 random bits from a buffered os.urandom."""

from __future__ import annotations

import os
import re

from ensayo.state.contacts import unit_tag
from ensayo.state.decisions import new_decision_id


def test_ids_carry_the_tag_and_never_repeat() -> None:
    """Thousands of ids (several refills of the buffer) are distinct 16-hex-digit suffixes."""
    ids = [new_decision_id("u-1") for _ in range(3000)]
    assert len(set(ids)) == len(ids)
    tag = unit_tag("u-1")
    assert all(re.fullmatch(re.escape(tag) + "[0-9a-f]{16}", i) for i in ids)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    """A child refills its own buffer: its next id differs from the parent's next one."""
    new_decision_id("u")  # the buffer now holds ids a naive child would hand out again
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_decision_id("u").encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert child != new_decision_id("u")
