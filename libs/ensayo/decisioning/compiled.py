"""A catalog snapshot compiled for decisioning, once per snapshot version.

Actions grouped by channel with their conditions compiled and their value, weight and
priority as arrays; holdouts that cover decisioning; the contact policies each channel needs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import structlog
from numpy.typing import NDArray

from ensayo.catalog.model import Action, ContactPolicy, Holdout, Snapshot
from ensayo.conditions import Evaluator, compile_condition
from ensayo.decisioning.contacts import relevant_policies
from ensayo.errors import InvalidArgument
from ensayo.hashing import hash_v2, in_range

__all__ = ["ChannelActions", "CompiledCatalog", "compile_snapshot"]

_log = structlog.get_logger()


def _never(_attributes: Mapping[str, object]) -> bool:
    return False


def _always(_attributes: Mapping[str, object]) -> bool:
    return True


def _compile(condition: Mapping[str, object], where: str, empty_matches: bool) -> Evaluator:
    """A compiled condition; a malformed one (the catalog validates, so a bug) never matches."""
    if not condition:
        return _always if empty_matches else _never
    try:
        return compile_condition(condition, where)
    except InvalidArgument as exc:
        _log.warning("condition_invalid", where=where, error=str(exc))
        return _never


@dataclass(frozen=True, slots=True, eq=False)
class ChannelActions:
    """The actions of one channel, in catalog order, and the policies they count against.

    Conditions are compiled once and de-duplicated: ``conditions`` holds each distinct
    condition of the channel, ``eligibility[i]`` the index of action ``i``'s eligibility
    condition (-1: everyone is eligible), and ``exclusions[i, c]`` whether condition ``c`` is
    one of action ``i``'s exclusions. A unit's screen evaluates each distinct condition once.
    ``watched`` are the keys an action-specific policy names, in channel order.
    """

    channel: str
    actions: tuple[Action, ...]
    keys: tuple[str, ...]
    index: Mapping[str, int]
    values: NDArray[np.float64]
    weights: NDArray[np.float64]
    priorities: NDArray[np.int64]
    conditions: tuple[Evaluator, ...]
    eligibility: NDArray[np.intp]
    exclusions: NDArray[np.bool_]
    starts: NDArray[np.float64]
    ends: NDArray[np.float64]
    policies: tuple[ContactPolicy, ...]
    watched: tuple[str, ...]
    watched_indices: NDArray[np.intp]
    _placements: dict[str, NDArray[np.bool_]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.actions)

    def fits(self, placement: str) -> NDArray[np.bool_]:
        """Which actions fit ``placement``: all when it is empty or an action lists none."""
        mask = self._placements.get(placement)
        if mask is None:
            mask = np.array(
                [
                    not placement or not a.placements or placement in a.placements
                    for a in self.actions
                ],
                dtype=bool,
            )
            if len(self._placements) < 256:  # bounded: placements come from requests
                self._placements[placement] = mask
        return mask

    def available(
        self, placement: str, now: datetime, *, reasons: bool = False
    ) -> tuple[NDArray[np.bool_], list[str | None] | None]:
        """Actions that fit ``placement`` and are live at ``now`` (start ≤ now < end).

        Returns the mask and, with ``reasons``, why each action is not available
        (``wrong_placement``, ``not_live``) or None.
        """
        fits = self.fits(placement)
        t = now.timestamp()
        mask = fits & (self.starts <= t) & (t < self.ends)
        if not reasons:
            return mask, None
        why: list[str | None] = [
            None if ok else ("wrong_placement" if not f else "not_live")
            for ok, f in zip(mask.tolist(), fits.tolist(), strict=True)
        ]
        return mask, why

    def matches(self, attributes: Mapping[str, object]) -> NDArray[np.bool_]:
        """Each distinct condition evaluated once on ``attributes``."""
        return np.array([condition(attributes) for condition in self.conditions], dtype=bool)


@dataclass(frozen=True, eq=False)
class CompiledCatalog:
    """A snapshot ready to decide from; build it with :func:`compile_snapshot`.

    ``retention_s`` is the longest window of any contact policy: contacts older than that
    no longer count anywhere.
    """

    version: int
    holdouts: tuple[tuple[Holdout, Evaluator], ...]
    policies: tuple[ContactPolicy, ...]
    retention_s: float
    _channels: dict[str, ChannelActions] = field(repr=False)

    def channel(self, name: str) -> ChannelActions:
        """The actions of channel ``name`` (none for an unknown channel)."""
        found = self._channels.get(name)
        return found if found is not None else _channel(name, (), self.policies)

    def holdout_for(self, unit_id: str, attributes: Mapping[str, object]) -> str:
        """The key of the first holdout covering decisioning that holds the unit, or ``""``.

        A unit is held out when the holdout's targeting matches and
        ``hash_v2(holdout.seed, unit_id) < fraction`` (``docs/hashing.md`` §5), exactly as
        the assignment service decides it.
        """
        for holdout, targeting in self.holdouts:
            if (
                holdout.fraction > 0
                and targeting(attributes)
                and in_range(hash_v2(holdout.seed, unit_id), 0.0, holdout.fraction)
            ):
                return holdout.key
        return ""


def _instant(value: datetime | None, default: float) -> float:
    return value.timestamp() if value is not None else default


def _channel(
    name: str, actions: tuple[Action, ...], policies: tuple[ContactPolicy, ...]
) -> ChannelActions:
    keys = tuple(a.key for a in actions)
    relevant = relevant_policies(policies, name, keys)
    named = {p.action_key for p in relevant if p.action_key}
    ids: dict[str, int] = {}
    conditions: list[Evaluator] = []

    def condition_id(condition: Mapping[str, object], where: str, empty_matches: bool) -> int:
        text = json.dumps(condition, sort_keys=True, default=str)
        if text not in ids:
            ids[text] = len(conditions)
            conditions.append(_compile(condition, where, empty_matches))
        return ids[text]

    eligibility = np.array(
        [
            condition_id(a.eligibility, f"action[{a.key}].eligibility", True)
            if a.eligibility
            else -1
            for a in actions
        ],
        dtype=np.intp,
    )
    excluded_by = [
        [
            condition_id(c, f"action[{a.key}].exclusions[{j}]", False)
            for j, c in enumerate(a.exclusions)
        ]
        for a in actions
    ]
    exclusions = np.zeros((len(actions), len(conditions)), dtype=bool)
    for i, row in enumerate(excluded_by):
        exclusions[i, row] = True
    return ChannelActions(
        channel=name,
        actions=actions,
        keys=keys,
        index={k: i for i, k in enumerate(keys)},
        values=np.array([a.value for a in actions], dtype=np.float64),
        weights=np.array([a.weight for a in actions], dtype=np.float64),
        priorities=np.array([a.priority for a in actions], dtype=np.int64),
        conditions=tuple(conditions),
        eligibility=eligibility,
        exclusions=exclusions,
        starts=np.array([_instant(a.start_time, -math.inf) for a in actions]),
        ends=np.array([_instant(a.end_time, math.inf) for a in actions]),
        policies=relevant,
        watched=tuple(k for k in keys if k in named),
        watched_indices=np.array([i for i, k in enumerate(keys) if k in named], dtype=np.intp),
    )


def compile_snapshot(snapshot: Snapshot) -> CompiledCatalog:
    """Compile every channel's actions, the covering holdouts and the contact policies."""
    by_channel: dict[str, list[Action]] = {}
    for action in snapshot.actions:
        by_channel.setdefault(action.channel, []).append(action)
    policies = tuple(snapshot.contact_policies)
    holdouts = tuple(
        (h, _compile(h.targeting, f"holdout[{h.key}].targeting", True))
        for h in snapshot.holdouts
        if h.covers_decisioning
    )
    return CompiledCatalog(
        version=snapshot.version,
        holdouts=holdouts,
        policies=policies,
        retention_s=max((p.window_s for p in policies), default=0.0),
        _channels={
            name: _channel(name, tuple(actions), policies) for name, actions in by_channel.items()
        },
    )
