"""Decisioning's own settings from ``ENSAYO_DECISIONING_*`` variables (pure; main() reads env).

Each variable, its default and meaning: the table in docs/decisioning.md (§9).
"""

from __future__ import annotations

from collections.abc import Mapping

from ensayo.bandits import BIAS, ExplorationPolicy, ExplorationSpec, FeatureSpec
from ensayo.decisioning.model import (
    DEFAULT_DECISION_TTL_S,
    DecisioningSettings,
    FailureMode,
    ModelKind,
)
from ensayo.errors import InvalidArgument
from ensayo.serverkit.config import ConfigError, EnvReader

__all__ = ["PREFIX", "settings_from_env"]

PREFIX = "ENSAYO_DECISIONING_"


def _features(raw: str) -> FeatureSpec:
    names = [n.strip() for n in raw.split(",") if n.strip()]
    return FeatureSpec(tuple(names if BIAS in names else [BIAS, *names]))


def settings_from_env(env: Mapping[str, str]) -> DecisioningSettings:
    """Read every ``ENSAYO_DECISIONING_*`` setting; ConfigError lists each bad variable."""
    reader = EnvReader(env, prefix=PREFIX)
    get, problems = reader.get, reader.problems

    exploration = None
    try:
        exploration = ExplorationSpec(
            get("EXPLORATION", ExplorationPolicy.EPSILON_GREEDY, ExplorationPolicy),
            epsilon=get("EPSILON", 0.1, float),
            temperature=get("TEMPERATURE", 1.0, float),
            uniform_mix=get("UNIFORM_MIX", 0.0, float),
            propensity_draws=get("PROPENSITY_DRAWS", 2000, int),
        )
    except InvalidArgument as exc:
        problems.append(f"{PREFIX}{exc.field.removeprefix('exploration.').upper()}: {exc}")
    values = {
        "model": get("MODEL", ModelKind.BETA, ModelKind),
        "features": get("FEATURES", FeatureSpec((BIAS,)), _features),
        "ucb_alpha": get("UCB_ALPHA", 1.0, float),
        "ts_scale": get("TS_SCALE", 1.0, float),
        "ridge": get("RIDGE", 1.0, float),
        "prior_alpha": get("PRIOR_ALPHA", 1.0, float),
        "prior_beta": get("PRIOR_BETA", 1.0, float),
        "discount": get("DISCOUNT", 1.0, float),
        "on_redis_down": get("ON_REDIS_DOWN", FailureMode.CLOSED, FailureMode),
        "decision_ttl_s": get("DECISION_TTL_S", DEFAULT_DECISION_TTL_S, float),
        "model_refresh_s": get("MODEL_REFRESH_S", 1.0, float),
        "log_flush_s": get("LOG_FLUSH_S", 0.005, float),
    }
    settings = None
    if not problems and exploration is not None:
        try:
            settings = DecisioningSettings(exploration=exploration, **values)  # type: ignore[arg-type]
        except InvalidArgument as exc:
            problems.append(f"{PREFIX}{exc.field.upper()}: {exc}")
    if problems or settings is None:
        raise ConfigError(problems)
    return settings
