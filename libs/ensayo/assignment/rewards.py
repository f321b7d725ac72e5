"""The bandit reward path: events of a bandit's reward metric credit the unit's arm.

An ``EventObserver`` the analysis service's ``Track`` calls with tracked events (retries too); the
arm comes from the event's ``experiment_key``/``variant_key`` when set, else from the unit's
stored assignment (bandit assignments are always stored).
"""

from __future__ import annotations

from collections.abc import Sequence

from ensayo.assignment.bandit import Credit, RewardRule, reward_rules
from ensayo.assignment.ports import BanditStore, SnapshotReader, StickyStore
from ensayo.catalog.model import Snapshot
from ensayo.events.model import Event

__all__ = ["BanditRewards"]


class BanditRewards:
    """Credits bandit arms with reward events, exactly once per (experiment, event id).

    An event with ``experiment_key`` set concerns that experiment only (with its
    ``variant_key`` as the arm, or the unit's stored arm when the variant is empty); an event
    without one rewards every running bandit whose reward metric counts its name, through
    the arm the unit was assigned. Units never assigned to a bandit credit nothing. Raises
    ``DependencyUnavailable`` when Redis is down, so ``Track`` answers UNAVAILABLE.
    """

    def __init__(self, snapshots: SnapshotReader, sticky: StickyStore, store: BanditStore) -> None:
        self._snapshots = snapshots
        self._sticky = sticky
        self._store = store
        self._rules: tuple[Snapshot, dict[str, list[RewardRule]]] | None = None

    def observe(self, events: Sequence[Event]) -> None:
        """Credit the arms the events reward; an event id already credited is skipped."""
        rules = self._rules_now()
        if not rules or not events:
            return
        credits: list[Credit] = []
        lookups: dict[str, list[tuple[Event, RewardRule]]] = {}
        for event in events:
            for rule in rules.get(event.name, ()):
                if event.experiment_key and event.experiment_key != rule.experiment_key:
                    continue
                if event.experiment_key and event.variant_key:
                    if event.variant_key in rule.variant_keys:
                        credits.append(_credit(rule, event, event.variant_key))
                    continue
                lookups.setdefault(event.unit_id, []).append((event, rule))
        if lookups:
            units = list(lookups)
            requests = [(u, sorted({r.experiment_key for _, r in lookups[u]})) for u in units]
            for unit_id, stored in zip(units, self._sticky.lookup_many(requests), strict=True):
                for event, rule in lookups[unit_id]:
                    arm = stored.get(rule.experiment_key)
                    if arm is not None and arm in rule.variant_keys:
                        credits.append(_credit(rule, event, arm))
        if credits:
            self._store.credit(credits)

    def _rules_now(self) -> dict[str, list[RewardRule]]:
        snapshot = self._snapshots.loaded
        if snapshot is None:
            return {}
        cached = self._rules
        if cached is not None and cached[0] is snapshot:
            return cached[1]
        rules = reward_rules(snapshot)
        self._rules = (snapshot, rules)
        return rules


def _credit(rule: RewardRule, event: Event, arm: str) -> Credit:
    return Credit(
        rule.experiment_key, arm, event.unit_id, event.event_id, event.value, rule.conversion
    )
