"""Catalog use cases: apply, read, list, change state, audit; each write publishes a snapshot.

The SQL write is the commit point. Publishing to Redis afterwards is best effort: a failure is
logged and ``republish`` (run periodically by the server) catches the data plane up.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from ensayo.catalog.model import (
    KIND_OF,
    AuditOperation,
    AuditRecord,
    ContactPolicy,
    Definition,
    Experiment,
    ExperimentState,
    Kind,
    LayerRange,
)
from ensayo.catalog.ports import CatalogRepository, Clock, ReadAll, SnapshotPublisher
from ensayo.catalog.validation import Known, legal_moves, validate, validate_key
from ensayo.errors import EnsayoError, FailedPrecondition, InvalidArgument, NotFound

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "CatalogUseCases", "Page", "list_all"]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing."""

    items: Sequence[object]
    next_page_token: str


def _page_size(value: int | None) -> int:
    if value is None:
        return DEFAULT_PAGE_SIZE
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise InvalidArgument("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")
    return value


def _encode_token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode("utf-8")).decode("ascii")


def _decode_token(token: str) -> str:
    if not token:
        return ""
    try:
        raw = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True)
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise InvalidArgument("page_token", "not a token from a previous response") from exc


class CatalogUseCases:
    """The catalog's behaviour, independent of gRPC and of the storage engine."""

    def __init__(
        self, repo: CatalogRepository, publisher: SnapshotPublisher | None, clock: Clock
    ) -> None:
        self._repo = repo
        self._publisher = publisher
        self._clock = clock

    # -- writes ---------------------------------------------------------------------------
    def apply(
        self, definition: Definition, expected_version: int | None, actor: str, root: str
    ) -> Definition:
        """Validate and store a new version; ``root`` prefixes field paths in errors."""
        kind = KIND_OF[type(definition)]
        if expected_version is not None and expected_version < 0:
            raise InvalidArgument("expected_version", "must be >= 0")

        def build(
            current: Definition | None, read_all: ReadAll
        ) -> tuple[Definition, AuditOperation]:
            # Under the write lock: two concurrent writes cannot both pass the checks across
            # definitions (overlapping layer ranges did, when this ran before the transaction).
            validate(definition, root, _known(kind, definition, read_all))
            new = definition
            if isinstance(new, Experiment):
                new = _merge_state(new, current, root)
            version = (current.version if current else 0) + 1
            new = dataclasses.replace(new, version=version, update_time=self._clock())
            op = AuditOperation.CREATE if current is None else AuditOperation.UPDATE
            return new, op

        stored = self._repo.save(
            kind, definition.key, build, expected_version, actor, self._clock()
        )
        self.republish()
        return stored

    def set_experiment_state(
        self, key: str, state: ExperimentState | None, expected_version: int | None, actor: str
    ) -> Experiment:
        """Move an experiment along its state machine; illegal moves are FailedPrecondition."""
        validate_key(key)
        if state is None:
            raise InvalidArgument("state", "required")
        if expected_version is not None and expected_version < 0:
            raise InvalidArgument("expected_version", "must be >= 0")

        def build(
            current: Definition | None, _read_all: ReadAll
        ) -> tuple[Definition, AuditOperation]:
            if not isinstance(current, Experiment):
                raise NotFound("experiment", key)
            if state not in legal_moves()[current.state]:
                raise FailedPrecondition(
                    f"state: cannot move experiment {key!r} from {current.state.upper()} "
                    f"to {state.upper()}"
                )
            new = dataclasses.replace(
                current, state=state, version=current.version + 1, update_time=self._clock()
            )
            return new, AuditOperation.SET_STATE

        stored = self._repo.save(
            Kind.EXPERIMENT, key, build, expected_version, actor, self._clock()
        )
        self.republish()
        assert isinstance(stored, Experiment)  # noqa: S101  (build returns experiments)
        return stored

    def republish(self) -> bool:
        """Publish the current snapshot; False (and a log line) when Redis did not take it."""
        if self._publisher is None:
            return False
        try:
            return self._publisher.publish(self._repo.snapshot(self._clock()))
        except EnsayoError as exc:
            _log.warning("snapshot_publish_failed", error=str(exc))
            return False

    # -- reads ----------------------------------------------------------------------------
    def get(self, kind: Kind, key: str, version: int = 0) -> Definition:
        """A definition at ``version`` (0: latest); NotFound otherwise."""
        validate_key(key)
        if version < 0:
            raise InvalidArgument("version", "must be >= 0")
        found = self._repo.get(kind, key, version)
        if found is None:
            what = f"{key}@{version}" if version else key
            raise NotFound(kind.value, what)
        return found

    def list_definitions(self, kind: Kind, page_size: int | None, page_token: str) -> Page:
        """Latest definitions ordered by key, paginated."""
        size = _page_size(page_size)
        items = self._repo.list(kind, _decode_token(page_token), size + 1)
        more = len(items) > size
        items = list(items[:size])
        token = _encode_token(items[-1].key) if more and items else ""
        return Page(items, token)

    def audit(self, kind: str, key: str, page_size: int | None, page_token: str) -> Page:
        """Audit records newest first, optionally for one kind/key, paginated."""
        size = _page_size(page_size)
        if kind and kind not in {k.value for k in Kind}:
            raise InvalidArgument("kind", f"unknown kind {kind!r}")
        raw = _decode_token(page_token)
        try:
            before = int(raw) if raw else 0
        except ValueError as exc:
            raise InvalidArgument("page_token", "not a token from a previous response") from exc
        if not 0 <= before < 2**63:  # an id; a larger number overflowed the SQL driver
            raise InvalidArgument("page_token", "not a token from a previous response")
        rows = self._repo.audit(kind, key, before, size + 1)
        more = len(rows) > size
        rows = list(rows[:size])
        token = _encode_token(str(rows[-1][0])) if more and rows else ""
        records: list[AuditRecord] = [r for _, r in rows]
        return Page(records, token)

    # -- helpers --------------------------------------------------------------------------


def _known(kind: Kind, definition: Definition, read_all: ReadAll) -> Known:
    """What validating ``definition`` needs to know of the other definitions."""
    if kind is Kind.EXPERIMENT:
        assert isinstance(definition, Experiment)  # noqa: S101
        ranges: dict[str, list[tuple[str, LayerRange]]] = {}
        for e in read_all(Kind.EXPERIMENT):
            assert isinstance(e, Experiment)  # noqa: S101
            if e.layer and e.layer_range and e.state is not ExperimentState.STOPPED:
                ranges.setdefault(e.layer, []).append((e.key, e.layer_range))
        return Known(
            metrics=frozenset(d.key for d in read_all(Kind.METRIC)),
            layers=frozenset(d.key for d in read_all(Kind.LAYER)),
            holdouts=frozenset(d.key for d in read_all(Kind.HOLDOUT)),
            layer_ranges={k: tuple(v) for k, v in ranges.items()},
        )
    if kind is Kind.CONTACT_POLICY:
        assert isinstance(definition, ContactPolicy)  # noqa: S101
        return Known(actions=frozenset(d.key for d in read_all(Kind.ACTION)))
    return Known()


def list_all(repo: CatalogRepository, kind: Kind) -> list[Definition]:
    """Every latest definition of ``kind``, walking the repository's pages."""
    out: list[Definition] = []
    after = ""
    while True:
        batch = repo.list(kind, after, MAX_PAGE_SIZE)
        out.extend(batch)
        if len(batch) < MAX_PAGE_SIZE:
            return out
        after = batch[-1].key


def _merge_state(new: Experiment, current: Definition | None, root: str) -> Experiment:
    """Apply keeps the stored state unless a legal move is asked for; stopped is final."""
    if current is None:
        if new.state not in (ExperimentState.DRAFT, ExperimentState.RUNNING):
            raise FailedPrecondition(
                f"{root}.state: a new experiment starts as DRAFT or RUNNING, "
                f"not {new.state.upper()}"
            )
        return new
    assert isinstance(current, Experiment)  # noqa: S101
    if current.state is ExperimentState.STOPPED:
        raise FailedPrecondition(f"{root}: experiment {new.key!r} is STOPPED and cannot change")
    if new.state is ExperimentState.DRAFT or new.state is current.state:
        return dataclasses.replace(new, state=current.state)
    if new.state not in legal_moves()[current.state]:
        raise FailedPrecondition(
            f"{root}.state: cannot move from {current.state.upper()} to {new.state.upper()}"
        )
    return new
