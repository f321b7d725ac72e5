"""The SQL catalog repository on SQLite and PostgreSQL: versions, audit, races, snapshots."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from ensayo.catalog.model import (
    Experiment,
    ExperimentState,
    Kind,
    Layer,
    LayerRange,
    Metric,
    MetricKind,
    Variant,
)
from ensayo.catalog.usecases import CatalogUseCases, list_all
from ensayo.errors import AlreadyExists, InvalidArgument, VersionConflict
from ensayo.storage import engine as sql
from ensayo.storage.catalog_repo import SqlCatalogRepository


def _race(target, n: int) -> None:
    """Run ``target(i)`` on ``n`` threads released together."""
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        target(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _now() -> datetime:
    return datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class RecordingPublisher:
    """A SnapshotPublisher port that keeps what it was given (a fake of a port, not of Redis)."""

    def __init__(self) -> None:
        self.published = []

    def publish(self, snapshot) -> bool:
        self.published.append(snapshot)
        return True


@pytest.fixture
def repo(database_url: str) -> SqlCatalogRepository:
    engine = sql.create(database_url)
    sql.migrate(engine)
    sql.migrate(engine)  # idempotent
    return SqlCatalogRepository(engine)


@pytest.fixture
def usecases(repo) -> tuple[CatalogUseCases, RecordingPublisher]:
    publisher = RecordingPublisher()
    return CatalogUseCases(repo, publisher, _now), publisher


class TestRepository:
    def test_versions_are_immutable_and_latest_is_head(self, usecases, repo) -> None:
        """Each apply adds a version; old versions stay readable."""
        uc, _ = usecases
        uc.apply(Layer("l", description="one"), None, "alice", "layer")
        uc.apply(Layer("l", description="two"), None, "bob", "layer")
        assert repo.get(Kind.LAYER, "l").description == "two"
        assert repo.get(Kind.LAYER, "l", 1).description == "one"
        assert repo.get(Kind.LAYER, "l", 3) is None

    def test_audit_records_actor_time_and_diff(self, usecases, repo) -> None:
        """Audit rows hold who, when, what; times come back timezone-aware UTC."""
        uc, _ = usecases
        uc.apply(Layer("l", description="one"), None, "alice", "layer")
        uc.apply(Layer("l", description="two"), None, "bob", "layer")
        (_, newest), (_, oldest) = repo.audit("", "", 0, 10)
        assert (newest.actor, newest.version, newest.time) == ("bob", 2, _now())
        assert newest.diff == {"description": {"before": "one", "after": "two"}}
        assert oldest.actor == "alice"

    def test_expected_version_rules(self, usecases) -> None:
        """0 creates only; N must match the head."""
        uc, _ = usecases
        uc.apply(Layer("l"), 0, "a", "layer")
        with pytest.raises(AlreadyExists):
            uc.apply(Layer("l"), 0, "a", "layer")
        with pytest.raises(VersionConflict):
            uc.apply(Layer("l"), 5, "a", "layer")
        assert uc.apply(Layer("l"), 1, "a", "layer").version == 2
        for write in (  # negative: INVALID_ARGUMENT for both writes (SetState said ABORTED)
            lambda: uc.apply(Layer("l"), -1, "a", "layer"),
            lambda: uc.set_experiment_state("e", ExperimentState.RUNNING, -1, "a"),
        ):
            with pytest.raises(InvalidArgument, match="expected_version"):
                write()

    def test_concurrent_writers_with_the_same_expected_version(self, usecases, repo) -> None:
        """Of 8 racing writers expecting version 1, exactly one wins; the rest are conflicts."""
        uc, _ = usecases
        uc.apply(Layer("l"), None, "a", "layer")
        outcomes: list[str] = []
        lock = threading.Lock()

        def write(i: int) -> None:
            try:
                uc.apply(Layer("l", description=str(i)), 1, f"w{i}", "layer")
                result = "ok"
            except VersionConflict:
                result = "conflict"
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["conflict"] * 7 + ["ok"]
        assert repo.get(Kind.LAYER, "l").version == 2
        assert len(repo.audit("layer", "l", 0, 100)) == 2

    def test_unconditional_concurrent_writers_all_land_in_sequence(self, usecases, repo) -> None:
        """Without expected_version, racing writes serialise into consecutive versions."""
        uc, _ = usecases
        uc.apply(Layer("l"), None, "a", "layer")
        errors: list[Exception] = []

        def write(i: int) -> None:
            try:
                uc.apply(Layer("l", description=str(i)), None, "w", "layer")
            except VersionConflict as exc:  # PostgreSQL refused lost races before the lock
                errors.append(exc)

        _race(write, 6)
        assert errors == []
        assert repo.get(Kind.LAYER, "l").version == 7
        versions = sorted(r.version for _, r in repo.audit("layer", "l", 0, 100))
        assert versions == list(range(1, 8))

    def test_racing_creates_of_a_new_key(self, usecases, repo) -> None:
        """Unconditional creates all land; of create-only ones exactly one does and the rest
        are ALREADY_EXISTS (on PostgreSQL they were ABORTED conflicts; found in review)."""
        uc, _ = usecases
        outcomes: list[str] = []

        def create(key: str, expected: int | None) -> None:
            try:
                uc.apply(Layer(key), expected, "w", "layer")
                outcomes.append("ok")
            except (AlreadyExists, VersionConflict) as exc:
                outcomes.append(type(exc).__name__)

        _race(lambda i: create("free-for-all", None), 6)
        assert outcomes == ["ok"] * 6
        assert repo.get(Kind.LAYER, "free-for-all").version == 6
        outcomes.clear()
        _race(lambda i: create("create-only", 0), 6)
        assert sorted(outcomes) == ["AlreadyExists"] * 5 + ["ok"]

    def test_overlapping_layer_ranges_cannot_both_be_stored_by_racing_writes(
        self, usecases, repo
    ) -> None:
        """The overlap check reads the other experiments under the write lock: of two racing
        experiments claiming the same half of a layer, one is refused (both were stored in
        most trials when the check ran before the transaction; found in review)."""
        uc, _ = usecases
        uc.apply(Layer("lay"), None, "a", "layer")
        for trial in range(10):
            refused: list[Exception] = []

            def claim(i: int, trial: int = trial, refused: list[Exception] = refused) -> None:
                experiment = Experiment(
                    f"e{trial}-{i}",
                    (Variant("a"), Variant("b")),
                    layer="lay",
                    layer_range=LayerRange(0.0, 0.5),
                )
                try:
                    uc.apply(experiment, None, "w", "experiment")
                except InvalidArgument as exc:
                    refused.append(exc)

            _race(claim, 2)
            assert len(refused) == 1, trial
            uc.set_experiment_state(  # free the half for the next trial
                next(
                    e.key
                    for e in list_all(repo, Kind.EXPERIMENT)
                    if e.key.startswith(f"e{trial}-")
                ),
                ExperimentState.STOPPED,
                None,
                "a",
            )

    def test_one_snapshot_version_is_one_content_under_racing_writes(self, usecases, repo) -> None:
        """Writes to different keys race; every snapshot published with a given version holds
        the same definitions, and the newest holds them all. (On PostgreSQL a write could
        commit after a later-numbered one, so a version was published without it and the
        data plane, which only takes newer versions, never saw it; found in review.)"""
        uc, publisher = usecases
        for round_ in range(10):
            _race(lambda i, r=round_: uc.apply(Layer(f"r{r}-{i}"), None, "w", "layer"), 4)
        contents: dict[int, set[str]] = {}
        for snapshot in publisher.published:
            keys = {layer.key for layer in snapshot.layers}
            assert contents.setdefault(snapshot.version, keys) == keys
        newest = max(contents)
        assert contents[newest] == {f"r{r}-{i}" for r in range(10) for i in range(4)}

    def test_snapshot_holds_latest_of_everything_and_its_version(self, usecases, repo) -> None:
        """The snapshot version is the last write's id; each write publishes a newer one."""
        uc, publisher = usecases
        uc.apply(Metric("m", "purchase", MetricKind.CONVERSION), None, "a", "metric")
        uc.apply(
            Experiment("e", (Variant("a"), Variant("b")), metrics=("m",)), None, "a", "experiment"
        )
        uc.set_experiment_state("e", ExperimentState.RUNNING, None, "a")
        snap = repo.snapshot(_now())
        assert snap.version == 3
        assert [e.state for e in snap.experiments] == [ExperimentState.RUNNING]
        assert [m.key for m in snap.metrics] == ["m"]
        assert [s.version for s in publisher.published] == [1, 2, 3]

    def test_list_orders_by_key_after_token(self, usecases, repo) -> None:
        """list returns latest versions with key > after, in key order."""
        uc, _ = usecases
        for key in ("c", "a", "b"):
            uc.apply(Layer(key), None, "x", "layer")
        uc.apply(Layer("a", description="v2"), None, "x", "layer")
        listed = repo.list(Kind.LAYER, "", 10)
        assert [(x.key, x.version) for x in listed] == [("a", 2), ("b", 1), ("c", 1)]
        assert [x.key for x in repo.list(Kind.LAYER, "a", 10)] == ["b", "c"]


class TestMigrations:
    def test_concurrent_migrations_do_not_collide(self, database_url) -> None:
        """Four replicas migrating the same empty database at once all succeed."""
        errors: list[BaseException] = []

        def run() -> None:
            try:
                sql.migrate(sql.create(database_url))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        repo = SqlCatalogRepository(sql.create(database_url))
        assert repo.list(Kind.LAYER, "", 10) == []
