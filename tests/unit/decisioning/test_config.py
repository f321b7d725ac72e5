"""Decisioning settings from the environment: defaults, parsing, every bad variable named."""

from __future__ import annotations

import pytest

from ensayo.bandits import ExplorationPolicy
from ensayo.decisioning.model import DecisioningSettings, FailureMode, ModelKind
from ensayo.serverkit.config import ConfigError
from services.decisioning.config import settings_from_env


class TestSettings:
    def test_defaults(self) -> None:
        """No variable: Beta model, epsilon-greedy 0.1, fail closed, 7-day decisions."""
        settings = settings_from_env({})
        assert settings == DecisioningSettings()
        assert settings.on_redis_down is FailureMode.CLOSED
        assert settings.decision_ttl_s == 7 * 86_400

    def test_every_setting_parses(self) -> None:
        """Each ENSAYO_DECISIONING_* variable reaches its setting; bias is added first."""
        env = {
            "ENSAYO_DECISIONING_MODEL": "linear",
            "ENSAYO_DECISIONING_EXPLORATION": "softmax",
            "ENSAYO_DECISIONING_TEMPERATURE": "0.2",
            "ENSAYO_DECISIONING_UNIFORM_MIX": "0.05",
            "ENSAYO_DECISIONING_FEATURES": "hour, tier=vip",
            "ENSAYO_DECISIONING_UCB_ALPHA": "0.5",
            "ENSAYO_DECISIONING_RIDGE": "2",
            "ENSAYO_DECISIONING_DISCOUNT": "0.99",
            "ENSAYO_DECISIONING_ON_REDIS_DOWN": "open",
            "ENSAYO_DECISIONING_DECISION_TTL_S": "3600",
            "ENSAYO_DECISIONING_MODEL_REFRESH_S": "0.5",
            "ENSAYO_DECISIONING_LOG_FLUSH_S": "0",
        }
        s = settings_from_env(env)
        assert s.model is ModelKind.LINEAR
        assert s.exploration.policy is ExplorationPolicy.SOFTMAX
        assert s.exploration.temperature == 0.2
        assert s.exploration.uniform_mix == 0.05
        assert s.features.names == ("bias", "hour", "tier=vip")
        assert (s.ucb_alpha, s.ridge, s.discount) == (0.5, 2.0, 0.99)
        assert s.on_redis_down is FailureMode.OPEN
        assert (s.decision_ttl_s, s.model_refresh_s, s.log_flush_s) == (3600.0, 0.5, 0.0)

    def test_bad_values_are_all_listed(self) -> None:
        """Every bad variable is named in one error."""
        env = {
            "ENSAYO_DECISIONING_MODEL": "forest",
            "ENSAYO_DECISIONING_ON_REDIS_DOWN": "maybe",
            "ENSAYO_DECISIONING_EPSILON": "2",
        }
        with pytest.raises(ConfigError) as info:
            settings_from_env(env)
        text = str(info.value)
        for name in ("MODEL", "ON_REDIS_DOWN", "EPSILON"):
            assert f"ENSAYO_DECISIONING_{name}" in text

    def test_domain_rules_apply(self) -> None:
        """A discount outside (0, 1] or a negative log flush interval is refused and named."""
        with pytest.raises(ConfigError) as info:
            settings_from_env({"ENSAYO_DECISIONING_DISCOUNT": "1.5"})
        assert "ENSAYO_DECISIONING_DISCOUNT" in str(info.value)
        with pytest.raises(ConfigError) as info:
            settings_from_env({"ENSAYO_DECISIONING_LOG_FLUSH_S": "-1"})
        assert "ENSAYO_DECISIONING_LOG_FLUSH_S" in str(info.value)
