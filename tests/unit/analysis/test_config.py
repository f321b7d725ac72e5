"""AnalysisConfig from the environment: defaults, every bad variable listed."""

from __future__ import annotations

import pytest

from ensayo.serverkit.config import ConfigError
from services.analysis.config import AnalysisConfig


class TestAnalysisConfig:
    def test_defaults(self) -> None:
        """The consumer runs as a child process and reclaims after 60 s by default."""
        assert AnalysisConfig.from_env({}) == AnalysisConfig("process", 60.0)

    def test_values(self) -> None:
        """Both variables are read."""
        config = AnalysisConfig.from_env(
            {"ENSAYO_ANALYSIS_CONSUMER": "Thread", "ENSAYO_ANALYSIS_CLAIM_IDLE_S": "5"}
        )
        assert config == AnalysisConfig("thread", 5.0)

    def test_every_problem_is_listed(self) -> None:
        """Two bad variables, two problems in one error."""
        with pytest.raises(ConfigError) as info:
            AnalysisConfig.from_env(
                {"ENSAYO_ANALYSIS_CONSUMER": "fork", "ENSAYO_ANALYSIS_CLAIM_IDLE_S": "-1"}
            )
        assert len(info.value.problems) == 2
