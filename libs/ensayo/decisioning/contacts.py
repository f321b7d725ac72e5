"""Contact policies as pure functions: which policies a decision touches, and what they allow.

A unit's contacts are ``(time, channel, action)`` entries. A policy counts the entries of
its channel and action (empty matches all) newer than ``now - window_s`` (a rolling window).
The Redis adapter runs the same rules in Lua, atomically; the fake store and the
explanation use these.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ensayo.catalog.model import ContactPolicy
from ensayo.decisioning.model import DecisionRecord

__all__ = [
    "SEPARATOR",
    "Contact",
    "ContactReply",
    "ContactRequest",
    "ContactState",
    "capping_policy",
    "count_contacts",
    "derive_state",
    "member",
    "parse_member",
    "policy_matches",
    "relevant_policies",
]

SEPARATOR = "\x1f"
"""Separates decision id, channel and action key in a stored contact (never in a key)."""


@dataclass(frozen=True, slots=True)
class Contact:
    """One delivered action: when (seconds since the epoch), through which channel, which."""

    time_s: float
    channel: str
    action_key: str


@dataclass(frozen=True, slots=True)
class ContactState:
    """What the unit's contact history allows a decision now.

    ``capped[i]`` is true when an action-specific policy blocks ``ContactRequest.watched[i]``;
    ``slots`` is how many actions may still be delivered under the policies that count every
    action of the channel (at most ``max_actions``).
    """

    capped: tuple[bool, ...]
    slots: int


@dataclass(frozen=True, slots=True)
class ContactRequest:
    """Check (and, with ``reserve``, record) one decision's contacts, atomically.

    The store compares the unit's actual state with ``expected``; only when they agree does it
    record ``chosen`` (action keys, in rank order) at ``now``. ``policies`` are the policies
    relevant to the channel, ``watched`` the action keys that an action-specific one names,
    ``retention_s`` the longest window of any policy (older contacts are dropped). A
    ``record`` is stored with the reservation, to expire after ``record_ttl_s``.
    """

    unit_id: str
    decision_id: str
    channel: str
    now: datetime
    policies: tuple[ContactPolicy, ...]
    watched: tuple[str, ...]
    max_actions: int
    expected: ContactState
    chosen: tuple[str, ...]
    reserve: bool
    retention_s: float
    record: DecisionRecord | None = None
    record_ttl_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ContactReply:
    """The unit's actual state, each policy's count, and whether ``expected`` was right.

    When ``matched`` and the request reserved, the chosen actions are now recorded.
    """

    state: ContactState
    counts: tuple[int, ...]
    matched: bool


def member(decision_id: str, channel: str, action_key: str) -> str:
    """The stored form of a contact: unique per decision and action."""
    return SEPARATOR.join((decision_id, channel, action_key))


def parse_member(text: str) -> tuple[str, str]:
    """The channel and action key of a stored contact."""
    _, channel, action_key = text.split(SEPARATOR, 2)
    return channel, action_key


def policy_matches(policy: ContactPolicy, channel: str, action_key: str) -> bool:
    """Whether a delivery of ``action_key`` through ``channel`` counts against ``policy``."""
    return policy.channel in ("", channel) and policy.action_key in ("", action_key)


def relevant_policies(
    policies: Sequence[ContactPolicy], channel: str, action_keys: Iterable[str]
) -> tuple[ContactPolicy, ...]:
    """The policies some action of ``channel`` (among ``action_keys``) counts against.

    Every candidate of a decision is in the request's channel, so a relevant policy without
    an action key covers all of them, and one with an action key covers exactly that action.
    """
    keys = set(action_keys)
    return tuple(
        p
        for p in policies
        if p.channel in ("", channel) and (p.action_key == "" or p.action_key in keys)
    )


def count_contacts(
    policies: Sequence[ContactPolicy], contacts: Iterable[Contact], now_s: float
) -> list[int]:
    """Each policy's count of contacts newer than ``now - window_s`` (its rolling window).

    Contacts stamped after ``now`` (by a replica whose clock runs ahead) count too, so clock
    skew between replicas can never let a cap be exceeded.
    """
    counts = [0] * len(policies)
    for contact in contacts:
        for i, p in enumerate(policies):
            if contact.time_s > now_s - p.window_s and policy_matches(
                p, contact.channel, contact.action_key
            ):
                counts[i] += 1
    return counts


def derive_state(
    policies: Sequence[ContactPolicy],
    counts: Sequence[int],
    watched: Sequence[str],
    max_actions: int,
) -> ContactState:
    """The state ``counts`` imply: capped watched actions, and the channel-wide slots left."""
    capped = {
        p.action_key
        for p, n in zip(policies, counts, strict=True)
        if p.action_key and n >= p.max_contacts
    }
    slots = max_actions
    for p, n in zip(policies, counts, strict=True):
        if not p.action_key:
            slots = min(slots, max(0, p.max_contacts - n))
    return ContactState(tuple(key in capped for key in watched), slots)


def capping_policy(
    policies: Sequence[ContactPolicy], counts: Sequence[int], action_key: str
) -> str:
    """The key of a policy that blocks ``action_key`` (for explanations), or ``""``."""
    for p, n in zip(policies, counts, strict=True):
        if p.action_key in ("", action_key) and n >= p.max_contacts:
            return p.key
    return ""
