"""Decision model parameters held in memory, reloaded when their version changes.

Replicas read parameters every ``model_refresh_s`` instead of per decision; when Redis is
unreachable they keep deciding on the last parameters they loaded.
"""

from __future__ import annotations

import threading

import structlog

from ensayo.decisioning.learning import ModelParams
from ensayo.decisioning.ports import ModelStore
from ensayo.errors import DependencyUnavailable

__all__ = ["ModelHolder"]

_log = structlog.get_logger()


class ModelHolder:
    """The latest :class:`ModelParams`; reads are one attribute load (atomic under the GIL).

    Until the first load every action is at its prior (version 0).
    """

    def __init__(self, store: ModelStore, feature_spec: str, n_features: int) -> None:
        self._store = store
        self._spec = feature_spec
        self._d = n_features
        self._params = ModelParams()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def params(self) -> ModelParams:
        """The parameters to decide with."""
        return self._params

    def refresh(self) -> bool:
        """Reload when a version moved; True when new parameters were swapped in.

        Raises ``DependencyUnavailable`` when the store is down (the old ones stay).
        """
        held = (self._params.beta_version, self._params.linear_version)
        if self._store.versions(self._spec) == held:
            return False
        self._params = self._store.load(self._spec, self._d)
        return True

    def start(self, interval_s: float) -> None:
        """Load now (a failure is logged), then every ``interval_s`` in a daemon thread."""
        self._try_refresh()
        self._thread = threading.Thread(
            target=self._run, args=(interval_s,), name="models", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop reloading."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _try_refresh(self) -> bool:
        try:
            self.refresh()
        except DependencyUnavailable as exc:
            _log.warning("model_refresh_failed", error=str(exc))
            return False
        return True

    def _run(self, interval_s: float) -> None:
        healthy = True
        while not self._stop.wait(interval_s):
            ok = self._try_refresh() if healthy else self._quiet_refresh()
            healthy = ok

    def _quiet_refresh(self) -> bool:
        # After a logged failure, retry without repeating the warning until it works again.
        try:
            self.refresh()
        except DependencyUnavailable:
            return False
        _log.info("model_refresh_recovered")
        return True
