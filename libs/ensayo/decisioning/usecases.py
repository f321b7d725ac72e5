"""The decisioning use cases: Decide, DecideBatch and ReportOutcome.

The imperative shell around the pure funnel: it reads the snapshot and model parameters
held in memory, settles contact policies through the contact store (atomically, retrying
when a concurrent decision changed the unit's state), and logs delivered decisions.
``Decide`` is ``DecideBatch`` with one unit: one code path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

import numpy as np
import structlog
from numpy.typing import NDArray

from ensayo.bandits import MAX_MAGNITUDE, ScoreSampler, featurize
from ensayo.catalog.model import ContactPolicy, JsonObject, Snapshot
from ensayo.catalog.ports import Clock
from ensayo.decisioning import engine
from ensayo.decisioning.compiled import ChannelActions, CompiledCatalog, compile_snapshot
from ensayo.decisioning.contacts import (
    ContactReply,
    ContactRequest,
    ContactState,
    capping_policy,
)
from ensayo.decisioning.engine import Choice, Scored
from ensayo.decisioning.explain import explain_action, explain_funnel
from ensayo.decisioning.holder import ModelHolder
from ensayo.decisioning.learning import ModelView, model_view
from ensayo.decisioning.model import (
    BatchQuery,
    DecideQuery,
    Decision,
    DecisioningSettings,
    DecisionRecord,
    FailureMode,
    ModelKind,
    Outcome,
    OutcomeResult,
    RankedAction,
    Stage,
    Subject,
)
from ensayo.decisioning.ports import ContactStore, DecisionStore, IdFactory, ModelStore
from ensayo.errors import DependencyUnavailable, InvalidArgument, NotFound
from ensayo.events.model import DECISION, OUTCOME, Event
from ensayo.events.ports import EventLog, EventSink
from ensayo.events.shipper import DirectSink

__all__ = ["CHUNK_UNITS", "MAX_SETTLE_ATTEMPTS", "DecisioningUseCases", "Snapshots"]

_log = structlog.get_logger()

CHUNK_UNITS = 1000
"""DecideBatch decides, reserves and logs this many units at a time (one pipeline each)."""
MAX_SETTLE_ATTEMPTS = 5
"""Tries to settle contacts while concurrent decisions keep changing a unit's state."""
MAX_REMEMBERED_STATES = 65_536
"""Units whose last seen contact state was not the open one, kept as the next first guess."""
_MAX_EVENT_ID = 256


class Snapshots(Protocol):
    """The catalog snapshot held in memory (``ensayo.catalog.holder.SnapshotHolder``)."""

    @property
    def current(self) -> Snapshot:
        """The snapshot; ``FailedPrecondition`` before the first one."""
        ...


@dataclass(frozen=True, slots=True)
class _Request:
    """What a Decide or DecideBatch asks, in one shape."""

    units: Sequence[Subject]
    channel: str
    placement: str
    max_actions: int
    context: Mapping[str, float]
    budgets: Mapping[str, int]
    dry_run: bool
    explain: bool
    unit_path: str  # "unit" for Decide, "units" for DecideBatch (error field paths)


@dataclass(frozen=True, eq=False)
class _Frame:
    """Everything a request decides from that does not depend on the unit."""

    request: _Request
    compiled: CompiledCatalog
    actions: ChannelActions
    view: ModelView
    lever: NDArray[np.float64]
    available: NDArray[np.bool_]
    reasons: list[str | None] | None
    now: datetime
    watched: NDArray[np.intp]  # channel indices of ContactState.capped
    channel_wide: bool  # some relevant policy counts every action of the channel

    @property
    def policies(self) -> tuple[ContactPolicy, ...]:
        return self.actions.policies


@dataclass(eq=False)
class _Chunk:
    """The per-unit working state of up to CHUNK_UNITS units."""

    units: Sequence[Subject]
    offset: int
    ids: list[str]
    holdouts: list[str]
    screened: NDArray[np.bool_]
    final: NDArray[np.bool_]
    features: NDArray[np.float64] | None
    scored: Scored
    states: list[ContactState]
    counts: list[tuple[int, ...]]
    choices: list[Choice]
    stages: list[list[str | None]] | None
    recorded: list[bool]  # the record was stored with the contact reservation


class DecisioningUseCases:
    """Next-best-action over the catalog snapshot, with learning from outcomes."""

    def __init__(
        self,
        *,
        snapshots: Snapshots,
        models: ModelHolder,
        model_store: ModelStore,
        contacts: ContactStore,
        decisions: DecisionStore,
        events: EventLog,
        clock: Clock,
        ids: IdFactory,
        settings: DecisioningSettings,
        decision_log: EventSink | None = None,
    ) -> None:
        """Wire the ports.

        ``decision_log`` takes the ``$decision`` events (default: appended to ``events``
        before Decide returns); outcomes are always appended before ReportOutcome returns.
        """
        self._snapshots = snapshots
        self._models = models
        self._model_store = model_store
        self._contacts = contacts
        self._decisions = decisions
        self._events = events
        self._decision_log = decision_log or DirectSink(events)
        self._clock = clock
        self._ids = ids
        self.settings = settings
        self._spec_id = settings.feature_spec_id()
        self._linear = settings.model is ModelKind.LINEAR
        self._compiled: CompiledCatalog | None = None
        self._views: dict[tuple[int, str, int, int], ModelView] = {}
        # (snapshot version, channel, max_actions, unit id) -> the unit's last seen contact
        # state, when something was capped: the next decision guesses it instead of the open
        # state, so a capped unit settles in one round trip, not two. Only a guess: the store
        # checks it atomically, and a stale one costs the retry it would have cost anyway.
        self._last_states: dict[tuple[int, str, int, str], ContactState] = {}

    # --- RPCs ----------------------------------------------------------------------------

    def decide(self, query: DecideQuery) -> Decision:
        """Decide for one unit (see ``DecisioningService.Decide``)."""
        engine.validate_decide(query)
        request = _Request(
            (query.unit,),
            query.channel,
            query.placement,
            query.max_actions,
            query.context,
            {},
            query.dry_run,
            query.explain,
            "unit",
        )
        return next(self._run(request))

    def decide_batch(self, query: BatchQuery) -> Iterator[Decision]:
        """Decide for every unit in order; validated as a whole before the first answer."""
        engine.validate_batch(query)
        request = _Request(
            query.units,
            query.channel,
            query.placement,
            query.max_actions,
            query.context,
            query.budgets,
            query.dry_run,
            False,
            "units",
        )
        return self._run(request)

    def report_outcome(self, outcome: Outcome) -> OutcomeResult:
        """Learn from one outcome exactly once per event id, and log it as ``$outcome``."""
        _validate_outcome(outcome)
        record = self._decisions.get(outcome.decision_id)
        if record is None:
            raise NotFound("decision", outcome.decision_id)
        if outcome.action_key not in record.action_keys:
            raise InvalidArgument(
                "action_key",
                f"{outcome.action_key!r} is not an action of decision {outcome.decision_id!r}",
            )
        applied = self._model_store.apply_outcome(
            outcome.event_id,
            outcome.action_key,
            outcome.reward,
            features=record.features,
            feature_spec=record.feature_spec,
            ridge=self.settings.ridge,
            discount=self.settings.discount,
            ttl_s=self.settings.decision_ttl_s,
        )
        # Appended even for a repeat: the event log de-duplicates by id, and a retry after a
        # failure between the two writes must still log it.
        self._events.append(
            [
                Event(
                    event_id=f"{OUTCOME}:{outcome.event_id}",
                    unit_id=record.unit_id,
                    name=OUTCOME,
                    time=self._clock(),
                    value=outcome.reward,
                    decision_id=outcome.decision_id,
                    properties={"action_key": outcome.action_key},
                )
            ]
        )
        return OutcomeResult(duplicate=not applied)

    # --- the shared path -----------------------------------------------------------------

    def _run(self, request: _Request) -> Iterator[Decision]:
        frame = self._frame(request)
        remaining = np.full(len(frame.actions), np.inf)
        for key, budget in request.budgets.items():
            index = frame.actions.index.get(key)
            if index is not None:
                remaining[index] = budget
        for start in range(0, len(request.units), CHUNK_UNITS):
            # A long stream: contacts are stamped, and liveness judged, at each chunk's time.
            if start:
                frame = _at(frame, self._clock())
            units = request.units[start : start + CHUNK_UNITS]
            decisions, remaining = self._decide_chunk(frame, units, start, remaining)
            yield from decisions

    def _frame(self, request: _Request) -> _Frame:
        compiled = self._compiled_snapshot()
        actions = compiled.channel(request.channel)
        now = self._clock()
        available, reasons = actions.available(request.placement, now, reasons=request.explain)
        return _Frame(
            request=request,
            compiled=compiled,
            actions=actions,
            view=self._view(compiled, actions),
            lever=engine.levers(request.context, actions.keys),
            available=available,
            reasons=reasons,
            now=now,
            watched=actions.watched_indices,
            channel_wide=any(not p.action_key for p in actions.policies),
        )

    def _compiled_snapshot(self) -> CompiledCatalog:
        snapshot = self._snapshots.current
        compiled = self._compiled
        if compiled is None or compiled.version != snapshot.version:
            compiled = compile_snapshot(snapshot)
            self._compiled = compiled
        return compiled

    def _view(self, compiled: CompiledCatalog, actions: ChannelActions) -> ModelView:
        params = self._models.params
        key = (compiled.version, actions.channel, params.beta_version, params.linear_version)
        view = self._views.get(key)
        if view is None:
            s = self.settings
            view = model_view(
                params,
                actions.keys,
                prior=(s.prior_alpha, s.prior_beta),
                linear_features=len(s.features) if self._linear else 0,
                ridge=s.ridge,
            )
            if len(self._views) > 64:
                self._views.clear()
            self._views[key] = view
        return view

    def _decide_chunk(
        self,
        frame: _Frame,
        units: Sequence[Subject],
        offset: int,
        remaining: NDArray[np.float64],
    ) -> tuple[list[Decision], NDArray[np.float64]]:
        chunk = self._screen(frame, units, offset)
        remaining = self._settle(frame, chunk, remaining)
        decisions = [self._decision(frame, chunk, r) for r in range(len(units))]
        if not frame.request.dry_run:
            self._log(frame, chunk, decisions)
        return decisions, remaining

    def _screen(self, frame: _Frame, units: Sequence[Subject], offset: int) -> _Chunk:
        n, k = len(units), len(frame.actions)
        request = frame.request
        stages = [list(frame.reasons or ()) for _ in units] if request.explain else None
        screened = np.zeros((n, k), dtype=bool)
        holdouts = []
        for r, unit in enumerate(units):
            holdouts.append(frame.compiled.holdout_for(unit.id, unit.attributes))
            screened[r] = engine.screen(
                frame.actions, frame.available, unit.attributes, stages[r] if stages else None
            )
        features = self._features(frame, units, offset) if self._linear else None
        initial = _open_state(frame)
        states = [initial] * n
        if frame.policies and self._last_states:
            guess, scope = self._last_states.get, _state_scope(frame)
            states = [
                initial if holdouts[r] else guess((*scope, unit.id), initial)
                for r, unit in enumerate(units)
            ]
        return _Chunk(
            units=units,
            offset=offset,
            ids=[self._ids(unit.id) for unit in units],
            holdouts=holdouts,
            screened=screened,
            final=np.zeros((n, k), dtype=bool),
            features=features,
            scored=engine.score_actions(
                frame.actions, frame.view, frame.lever, self.settings, features, n
            ),
            states=states,
            counts=[(0,) * len(frame.policies)] * n,
            choices=[Choice.empty()] * n,
            stages=stages,
            recorded=[False] * n,
        )

    def _features(
        self, frame: _Frame, units: Sequence[Subject], offset: int
    ) -> NDArray[np.float64]:
        rows = []
        for r, unit in enumerate(units):
            try:
                rows.append(
                    featurize(frame.request.context, unit.attributes, self.settings.features)
                )
            except InvalidArgument as exc:
                path = frame.request.unit_path
                raise exc.prefixed(path if path == "unit" else f"{path}[{offset + r}]") from None
        return np.stack(rows) if rows else np.zeros((0, len(self.settings.features)))

    def _settle(
        self, frame: _Frame, chunk: _Chunk, remaining: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """Choose, then settle contacts; units whose state changed meanwhile choose again."""
        pending = [r for r in range(len(chunk.units)) if not chunk.holdouts[r]]
        for _ in range(MAX_SETTLE_ATTEMPTS):
            remaining = self._choose(frame, chunk, pending, remaining)
            if not frame.policies or not pending:
                return remaining
            replies = self._contact(frame, chunk, pending)
            if replies is None:  # fail-open: Redis is down, decide without caps
                return self._uncapped(frame, chunk, pending, remaining)
            retry = []
            for r, reply in zip(pending, replies, strict=True):
                chunk.counts[r] = reply.counts
                self._remember(frame, chunk.units[r].id, reply.state)
                if not reply.matched:
                    _unchoose(chunk, r, reply.state, remaining)
                    retry.append(r)
            pending = retry
            if not pending:
                return remaining
        raise DependencyUnavailable("redis", "contact counters kept changing; retry the call")

    def _uncapped(
        self,
        frame: _Frame,
        chunk: _Chunk,
        pending: list[int],
        remaining: NDArray[np.float64],
    ) -> NDArray[np.float64]:
        """Choose again, as if nothing were capped, for units chosen under a remembered state."""
        open_state = _open_state(frame)
        guessed = [r for r in pending if chunk.states[r] != open_state]
        for r in guessed:
            _unchoose(chunk, r, open_state, remaining)
        return self._choose(frame, chunk, guessed, remaining) if guessed else remaining

    def _remember(self, frame: _Frame, unit_id: str, state: ContactState) -> None:
        """Keep a capped state as the unit's next first guess; forget an open one."""
        key = (*_state_scope(frame), unit_id)
        if state.slots >= frame.request.max_actions and not any(state.capped):
            if self._last_states:
                self._last_states.pop(key, None)
            return
        if len(self._last_states) >= MAX_REMEMBERED_STATES:
            self._last_states.clear()  # bounded; the guesses are rebuilt by the next misses
        self._last_states[key] = state

    def _choose(
        self,
        frame: _Frame,
        chunk: _Chunk,
        pending: list[int],
        remaining: NDArray[np.float64],
    ) -> NDArray[np.float64]:
        """Choose for ``pending`` units in order, choosing again after a budget runs out."""
        rows = list(pending)
        for r in rows:
            chunk.final[r] = chunk.screened[r]
            capped = chunk.states[r].capped
            if any(capped):
                chunk.final[r, frame.watched[np.array(capped, dtype=bool)]] = False
        scores = chunk.scored.score
        budgeted = bool(frame.request.budgets)  # without budgets every choice fits
        while rows:
            # One unit (Decide) by slicing: a row list is a fancy index, which releases the GIL
            # (a hand-off to another handler thread in a busy server).
            one = slice(rows[0], rows[0] + 1) if len(rows) == 1 else rows
            masks = chunk.final[one].copy()
            if budgeted:
                masks &= (remaining >= 1)[None, :]
            choices = engine.choose(
                self.settings,
                frame.actions.priorities,
                scores[one],
                masks,
                [chunk.states[r].slots for r in rows],
                [chunk.ids[r] for r in rows],
                self._sampler_for(frame, chunk, rows),
            )
            fitted = len(choices)
            if budgeted:
                fitted, remaining = engine.spend(choices, remaining)
            for j in range(fitted):
                chunk.choices[rows[j]] = choices[j]
                chunk.final[rows[j]] = masks[j]
            rows = rows[fitted:]
        return remaining

    def _sampler_for(self, frame: _Frame, chunk: _Chunk, rows: list[int]) -> engine.SamplerFor:
        def sampler_for(j: int, idx: NDArray[np.intp]) -> ScoreSampler:
            x = chunk.features[rows[j]] if chunk.features is not None else None
            return engine.thompson_sampler(
                frame.view, chunk.scored.multiplier, self.settings, x, idx
            )

        return sampler_for

    def _record(self, frame: _Frame, chunk: _Chunk, r: int) -> DecisionRecord:
        """What ReportOutcome needs of unit ``r``'s decision."""
        holdout = chunk.holdouts[r]
        linear = chunk.features is not None and not holdout
        keys = frame.actions.keys
        return DecisionRecord(
            decision_id=chunk.ids[r],
            unit_id=chunk.units[r].id,
            time=frame.now,
            action_keys=tuple(keys[i] for i in chunk.choices[r].indices.tolist()),
            features=tuple(chunk.features[r].tolist())
            if linear and chunk.features is not None
            else (),
            feature_spec=self._spec_id if linear else "",
            holdout_key=holdout,
        )

    def _contact(self, frame: _Frame, chunk: _Chunk, rows: list[int]) -> list[ContactReply] | None:
        keys = frame.actions.keys
        watched = set(frame.actions.watched)
        reserve = not frame.request.dry_run
        requests = []
        for r in rows:
            chosen = [keys[i] for i in chunk.choices[r].indices.tolist()]
            requests.append(
                ContactRequest(
                    unit_id=chunk.units[r].id,
                    decision_id=chunk.ids[r],
                    channel=frame.actions.channel,
                    now=frame.now,
                    policies=frame.policies,
                    watched=frame.actions.watched,
                    max_actions=frame.request.max_actions,
                    expected=chunk.states[r],
                    chosen=tuple(k for k in chosen if frame.channel_wide or k in watched),
                    reserve=reserve,
                    retention_s=frame.compiled.retention_s,
                    record=self._record(frame, chunk, r) if reserve else None,
                    record_ttl_s=self.settings.decision_ttl_s,
                )
            )
        try:
            replies = self._contacts.settle(requests)
        except DependencyUnavailable as exc:
            if self.settings.on_redis_down is FailureMode.CLOSED:
                raise
            _log.warning("contact_policies_skipped", error=str(exc), units=len(rows))
            return None
        for r, reply in zip(rows, replies, strict=True):
            chunk.recorded[r] = reply.matched and reserve  # stored with the reservation
        return replies

    # --- results and logs ----------------------------------------------------------------

    def _decision(self, frame: _Frame, chunk: _Chunk, r: int) -> Decision:
        actions, scored, choice = frame.actions, chunk.scored, chunk.choices[r]
        ranked = []
        for j, i in enumerate(choice.indices.tolist()):
            explanation = None
            if chunk.stages is not None:
                x = chunk.features[r] if chunk.features is not None else None
                explanation = explain_action(
                    actions, scored, r, choice, j, frame.view, x, self.settings.features
                )
            ranked.append(
                RankedAction(
                    action_key=actions.keys[i],
                    score=float(scored.rank[r, i] * scored.multiplier[i]),
                    propensity=float(choice.propensities[j]),
                    expected_value=float(scored.rate[r, i] * actions.values[i]),
                    payload=actions.actions[i].payload,
                    explanation=explanation,
                )
            )
        holdout = chunk.holdouts[r]
        return Decision(
            decision_id=chunk.ids[r],
            unit_id=chunk.units[r].id,
            actions=tuple(ranked),
            holdout=bool(holdout),
            holdout_key=holdout,
            policy_version=engine.policy_version(frame.compiled.version, frame.view.version),
            explanation=self._funnel(frame, chunk, r) if chunk.stages is not None else None,
        )

    def _funnel(self, frame: _Frame, chunk: _Chunk, r: int) -> JsonObject:
        assert chunk.stages is not None  # noqa: S101 - only with explain
        stages = chunk.stages[r]
        keys = frame.actions.keys
        capped_by: dict[str, str] = {}
        for i in np.flatnonzero(chunk.screened[r]).tolist():
            if chunk.holdouts[r]:
                stages[i] = Stage.HOLDOUT
            elif not chunk.final[r, i]:
                stages[i] = Stage.CAPPED
                capped_by[keys[i]] = capping_policy(frame.policies, chunk.counts[r], keys[i])
            elif chunk.states[r].slots <= 0:
                stages[i] = Stage.NO_SLOT
        for i in chunk.choices[r].indices.tolist():
            stages[i] = Stage.CHOSEN
        out = explain_funnel(
            frame.actions,
            stages,
            None if chunk.holdouts[r] else chunk.scored,
            r,
            frame.policies,
            chunk.counts[r],
            capped_by,
            chunk.states[r].slots,
        )
        out.update(
            {
                "model": self.settings.model.value,
                "exploration": self.settings.exploration.policy.value,
                "snapshot_version": frame.compiled.version,
                "model_version": frame.view.version,
            }
        )
        return out

    def _log(self, frame: _Frame, chunk: _Chunk, decisions: list[Decision]) -> None:
        records, events = [], []
        request, keys = frame.request, frame.actions.keys
        for r, decision in enumerate(decisions):
            candidates = chunk.screened[r] if decision.holdout else chunk.final[r]
            if not chunk.recorded[r]:
                records.append(self._record(frame, chunk, r))
            events.append(
                Event(
                    event_id=decision.decision_id,
                    unit_id=decision.unit_id,
                    name=DECISION,
                    time=frame.now,
                    decision_id=decision.decision_id,
                    probability=decision.actions[0].propensity if decision.actions else 0.0,
                    properties={
                        "channel": request.channel,
                        "placement": request.placement,
                        "context": dict(request.context),
                        "candidates": [keys[i] for i in np.flatnonzero(candidates).tolist()],
                        "chosen": [
                            {
                                "action_key": a.action_key,
                                "propensity": a.propensity,
                                "score": a.score,
                                "expected_value": a.expected_value,
                            }
                            for a in decision.actions
                        ],
                        "policy_version": decision.policy_version,
                        "snapshot_version": frame.compiled.version,
                        "model_version": frame.view.version,
                        "holdout": decision.holdout,
                        "holdout_key": decision.holdout_key,
                        "max_actions": request.max_actions,
                        "slots": chunk.states[r].slots,
                        "model": self.settings.model.value,
                        "exploration": self.settings.exploration.policy.value,
                        "propensity_exact": bool(chunk.choices[r].exact),
                    },
                )
            )
        try:
            if records:
                self._decisions.save(records, self.settings.decision_ttl_s)
            self._decision_log.submit(events)
        except DependencyUnavailable as exc:
            if self.settings.on_redis_down is FailureMode.CLOSED:
                raise
            _log.warning("decisions_not_logged", error=str(exc), decisions=len(decisions))


def _unchoose(chunk: _Chunk, r: int, state: ContactState, remaining: NDArray[np.float64]) -> None:
    """Take back unit ``r``'s choice (its budget too), to choose again under ``state``."""
    remaining[chunk.choices[r].indices] += 1
    chunk.states[r] = state
    chunk.choices[r] = Choice.empty()


def _at(frame: _Frame, now: datetime) -> _Frame:
    """``frame`` at ``now``: the same snapshot and models, availability judged again."""
    request = frame.request
    available, reasons = frame.actions.available(request.placement, now, reasons=request.explain)
    return replace(frame, now=now, available=available, reasons=reasons)


def _state_scope(frame: _Frame) -> tuple[int, str, int]:
    """What a remembered contact state holds for, besides the unit: snapshot, channel, slots."""
    return frame.compiled.version, frame.request.channel, frame.request.max_actions


def _open_state(frame: _Frame) -> ContactState:
    """Nothing capped, every slot free: the first guess for a unit not seen capped."""
    return ContactState((False,) * frame.watched.size, frame.request.max_actions)


def _validate_outcome(outcome: Outcome) -> None:
    if not outcome.decision_id:
        raise InvalidArgument("decision_id", "required")
    if not outcome.action_key:
        raise InvalidArgument("action_key", "required")
    if not outcome.event_id:
        raise InvalidArgument("event_id", "required")
    if len(outcome.event_id) > _MAX_EVENT_ID:
        raise InvalidArgument("event_id", f"must be at most {_MAX_EVENT_ID} characters")
    if not -MAX_MAGNITUDE <= outcome.reward <= MAX_MAGNITUDE:  # false for nan too
        raise InvalidArgument("reward", f"must be finite, within ±{MAX_MAGNITUDE:g}")
