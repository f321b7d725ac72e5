"""Explanations of a decision: every candidate's stage, and the inputs of each score.

Returned only when a ``Decide`` asks for them; plain JSON objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ensayo.bandits import FeatureSpec
from ensayo.catalog.model import ContactPolicy, JsonObject
from ensayo.decisioning.compiled import ChannelActions
from ensayo.decisioning.engine import Choice, Scored
from ensayo.decisioning.learning import ModelView

__all__ = ["TOP_FEATURES", "explain_action", "explain_funnel"]

TOP_FEATURES = 5
"""How many features an explanation lists: those that moved the predicted rate most."""


def explain_action(
    actions: ChannelActions,
    scored: Scored,
    row: int,
    choice: Choice,
    j: int,
    view: ModelView,
    x: NDArray[np.float64] | None,
    spec: FeatureSpec,
) -> JsonObject:
    """Why the ``j``-th returned action got its place: tier, rate, value, levers, score.

    For a linear model, the features with the largest contributions ``x_i·θ_i`` to the
    predicted rate are listed too.
    """
    i = int(choice.indices[j])
    action = actions.actions[i]
    multiplier = float(scored.multiplier[i])
    out: JsonObject = {
        "stage": "chosen",
        "rank": j + 1,
        "tier": action.priority,
        "rate": float(scored.rate[row, i]),
        "value": action.value,
        "weight": action.weight,
        "lever": multiplier / (action.value * action.weight)
        if action.value * action.weight
        else 1.0,
        "rank_score": float(scored.rank[row, i]),
        "score": float(scored.rank[row, i]) * multiplier,
        "propensity_exact": choice.exact,
        "propensity_standard_error": float(choice.standard_errors[j]),
        "explored": choice.explored,
    }
    if view.theta is not None and x is not None:
        contributions = x * view.theta[i]
        top = np.argsort(-np.abs(contributions), kind="stable")[:TOP_FEATURES]
        out["features"] = [
            {
                "name": spec.names[f],
                "value": float(x[f]),
                "contribution": float(contributions[f]),
            }
            for f in top.tolist()
        ]
    else:
        out["alpha"] = float(view.beta.alpha[i])
        out["beta"] = float(view.beta.beta[i])
    return out


def explain_funnel(
    actions: ChannelActions,
    stages: Sequence[str | None],
    scored: Scored | None,
    row: int,
    policies: Sequence[ContactPolicy],
    counts: Sequence[int],
    capped_by: dict[str, str],
    slots: int,
) -> JsonObject:
    """Every action of the channel: the stage it reached, and its score if it was ranked."""
    candidates: JsonObject = {}
    for i, key in enumerate(actions.keys):
        stage = stages[i] or "ranked"
        entry: JsonObject = {"stage": str(stage), "tier": actions.actions[i].priority}
        if key in capped_by:
            entry["policy"] = capped_by[key]
        if scored is not None and stage in ("ranked", "chosen"):
            entry["rate"] = float(scored.rate[row, i])
            entry["score"] = float(scored.rank[row, i] * scored.multiplier[i])
        candidates[key] = entry
    return {
        "candidates": candidates,
        "slots": slots,
        "contact_policies": [
            {
                "key": p.key,
                "count": int(n),
                "max_contacts": p.max_contacts,
                "window_s": p.window_s,
            }
            for p, n in zip(policies, counts, strict=True)
        ],
    }
