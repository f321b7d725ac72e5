"""Linear contextual bandits for decisioning, and the context featuriser.

Per-action ridge regressions kept as stacked inverse Gram matrices, updated by
Sherman-Morrison, scored by LinUCB or linear Thompson sampling for all actions at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ensayo.bandits.scoring import ScoreSampler, gaussian_sampler
from ensayo.errors import InvalidArgument

__all__ = [
    "BIAS",
    "MAX_MAGNITUDE",
    "FeatureSpec",
    "LinearModel",
    "coefficients",
    "featurize",
    "featurize_batch",
    "lin_ts_sample",
    "lin_ts_sampler",
    "lin_ucb_scores",
    "linear_prior",
    "predict",
    "update",
    "update_batch",
    "update_inplace",
]

BIAS = "bias"
"""The reserved feature name of the constant-1 intercept."""
MAX_MAGNITUDE = 1e9
"""The largest |value| of a numeric feature (and of a reward that updates a model): far past
any sensible feature or reward, and far enough from float overflow that the model's running
sums and its scores stay finite whatever a caller sends."""


@dataclass(frozen=True, slots=True, eq=False)
class LinearModel:
    """Disjoint ridge regressions, one per action, over the same ``d`` features.

    ``a_inv[a]`` is ``A_a⁻¹`` with ``A_a = λI + Σ x xᵀ`` over action ``a``'s observations,
    ``b[a] = Σ reward · x`` and ``counts[a]`` the number of observations; shapes
    ``(K, d, d)``, ``(K, d)`` and ``(K,)``. ``ridge`` is λ. Treat the arrays as immutable
    except through :func:`update_inplace`.
    """

    a_inv: NDArray[np.float64]
    b: NDArray[np.float64]
    counts: NDArray[np.int64]
    ridge: float

    def __post_init__(self) -> None:
        k, d = self.b.shape if self.b.ndim == 2 else (-1, -1)
        if k < 0 or self.a_inv.shape != (k, d, d) or self.counts.shape != (k,):
            raise InvalidArgument("model", "a_inv, b and counts must be (K, d, d), (K, d), (K,)")

    @property
    def n_actions(self) -> int:
        """Number of actions ``K``."""
        return int(self.b.shape[0])

    @property
    def n_features(self) -> int:
        """Number of features ``d`` (bias included)."""
        return int(self.b.shape[1])


def linear_prior(n_actions: int, n_features: int, ridge: float = 1.0) -> LinearModel:
    """Build a model with no data: ``A = λI`` (so ``A⁻¹ = I / λ``) and ``b = 0`` for every action.

    λ > 0 is the ridge penalty, equivalently a N(0, I/λ) prior on each action's
    coefficients (up to the noise scale).
    """
    if n_actions < 0 or n_features < 1:
        raise InvalidArgument("n_features", "need n_actions ≥ 0 and n_features ≥ 1")
    if not (math.isfinite(ridge) and ridge > 0):
        raise InvalidArgument("ridge", f"must be finite and > 0, got {ridge!r}")
    eye = np.eye(n_features) / ridge
    return LinearModel(
        a_inv=np.repeat(eye[None, :, :], n_actions, axis=0),
        b=np.zeros((n_actions, n_features)),
        counts=np.zeros(n_actions, dtype=np.int64),
        ridge=float(ridge),
    )


def _vector(model: LinearModel, x: ArrayLike) -> NDArray[np.float64]:
    v = np.asarray(x, dtype=np.float64)
    if v.shape != (model.n_features,) or not np.all(np.isfinite(v)):
        raise InvalidArgument("x", f"must be {model.n_features} finite features")
    return v


def _check_action(model: LinearModel, action_index: int) -> None:
    if not 0 <= action_index < model.n_actions:
        raise InvalidArgument("action_index", f"must be in [0, {model.n_actions})")


def update_inplace(model: LinearModel, action_index: int, x: ArrayLike, reward: float) -> None:
    """Add one observation to ``model`` in place (the fast path for a private working copy).

    Sherman-Morrison (Sherman and Morrison 1950; Golub and Van Loan, "Matrix Computations",
    §2.1.4): ``(A + x xᵀ)⁻¹ = A⁻¹ - (A⁻¹x)(A⁻¹x)ᵀ / (1 + xᵀA⁻¹x)``, using that ``A⁻¹`` is
    symmetric; ``O(d²)`` instead of a fresh ``O(d³)`` inverse. ``b += reward · x``.
    """
    _check_action(model, action_index)
    v = _vector(model, x)
    if not math.isfinite(reward):
        raise InvalidArgument("reward", "must be finite")
    a_inv = model.a_inv[action_index]
    u = a_inv @ v
    # 1 + xᵀA⁻¹x ≥ 1 because A⁻¹ is positive definite, so the division is safe.
    a_inv -= np.outer(u, u) / (1.0 + float(v @ u))
    model.b[action_index] += reward * v
    model.counts[action_index] += 1


def _copy(model: LinearModel) -> LinearModel:
    return LinearModel(model.a_inv.copy(), model.b.copy(), model.counts.copy(), model.ridge)


def update(model: LinearModel, action_index: int, x: ArrayLike, reward: float) -> LinearModel:
    """Return a new model with one more observation of ``action_index``; keep ``model``.

    Copies the ``K x d x d`` arrays; for many observations use :func:`update_batch`.
    """
    result = _copy(model)
    update_inplace(result, action_index, x, reward)
    return result


def update_batch(
    model: LinearModel,
    action_indices: ArrayLike,
    features: ArrayLike,
    rewards: ArrayLike,
) -> LinearModel:
    """Return a new model with observations ``(action_indices[i], features[i], rewards[i])``.

    They are added in order: one copy, then one Sherman-Morrison step each.
    """
    idx = np.asarray(action_indices, dtype=np.intp).reshape(-1)
    x = np.asarray(features, dtype=np.float64).reshape(idx.size, -1)
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if r.size != idx.size:
        raise InvalidArgument("rewards", "must have one reward per observation")
    result = _copy(model)
    for a, row, reward in zip(idx.tolist(), x, r.tolist(), strict=True):
        update_inplace(result, a, row, reward)
    return result


def coefficients(model: LinearModel) -> NDArray[np.float64]:
    """Ridge estimates ``θ_a = A_a⁻¹ b_a`` of every action, shape ``(K, d)``."""
    theta: NDArray[np.float64] = np.einsum("kij,kj->ki", model.a_inv, model.b)
    return theta


def _contexts(model: LinearModel, x: ArrayLike) -> NDArray[np.float64]:
    v = np.asarray(x, dtype=np.float64)
    if v.ndim not in (1, 2) or v.shape[-1] != model.n_features or not np.all(np.isfinite(v)):
        raise InvalidArgument(
            "x", f"must be (d,) or (n, d) finite features, d = {model.n_features}"
        )
    return v


def predict(model: LinearModel, x: ArrayLike) -> NDArray[np.float64]:
    """Predict every action's reward ``xᵀθ_a``: ``(K,)`` for one context, ``(n, K)`` for ``n``."""
    v = _contexts(model, x)
    mean: NDArray[np.float64] = v @ coefficients(model).T
    return mean


def _quadratic(model: LinearModel, v: NDArray[np.float64]) -> NDArray[np.float64]:
    """``xᵀA_a⁻¹x`` for every action (and context), ≥ 0."""
    if v.ndim == 1:
        q = np.einsum("i,kij,j->k", v, model.a_inv, v)
    else:
        q = np.einsum("ni,kij,nj->nk", v, model.a_inv, v, optimize=True)
    result: NDArray[np.float64] = np.maximum(q, 0.0)
    return result


def lin_ucb_scores(model: LinearModel, x: ArrayLike, alpha: float) -> NDArray[np.float64]:
    """LinUCB score ``xᵀθ_a + alpha · sqrt(xᵀA_a⁻¹x)`` of every action in one batched call.

    Li, Chu, Langford and Schapire (2010), "A contextual-bandit approach to personalized
    news article recommendation", Algorithm 1 (disjoint models). ``x`` is ``(d,)`` → ``(K,)``
    or ``(n, d)`` → ``(n, K)``; ``alpha ≥ 0`` widens the confidence bonus.
    """
    if not (math.isfinite(alpha) and alpha >= 0):
        raise InvalidArgument("alpha", "must be finite and non-negative")
    v = _contexts(model, x)
    scores: NDArray[np.float64] = predict(model, v) + alpha * np.sqrt(_quadratic(model, v))
    return scores


def lin_ts_sample(
    model: LinearModel,
    x: ArrayLike,
    rng: np.random.Generator,
    v: float,
    draws: int | None = None,
) -> NDArray[np.float64]:
    """Linear Thompson sampling scores ``xᵀθ̃_a`` with ``θ̃_a ~ N(θ_a, v² A_a⁻¹)``.

    Agrawal and Goyal (2013), "Thompson sampling for contextual bandits with linear
    payoffs". Only ``xᵀθ̃_a`` is needed, and it is exactly ``N(xᵀθ_a, v² xᵀA_a⁻¹x)``, so
    one normal draw per action (and context) replaces a ``d``-dimensional one. Shapes:
    ``(d,)`` → ``(K,)`` or ``(draws, K)``; ``(n, d)`` → ``(n, K)`` (``draws`` not allowed).
    """
    if not (math.isfinite(v) and v >= 0):
        raise InvalidArgument("v", "must be finite and non-negative")
    ctx = _contexts(model, x)
    mean = predict(model, ctx)
    sd = v * np.sqrt(_quadratic(model, ctx))
    if draws is None:
        return mean + sd * rng.standard_normal(mean.shape)
    if ctx.ndim != 1:
        raise InvalidArgument("draws", "is only supported for a single context")
    return gaussian_sampler(mean, sd)(rng, draws)


def lin_ts_sampler(model: LinearModel, x: ArrayLike, v: float) -> ScoreSampler:
    """Wrap :func:`lin_ts_sample` for one context as a sampler for ``select``."""
    if not (math.isfinite(v) and v >= 0):
        raise InvalidArgument("v", "must be finite and non-negative")
    ctx = _vector(model, x)
    return gaussian_sampler(predict(model, ctx), v * np.sqrt(_quadratic(model, ctx)))


@dataclass(frozen=True, slots=True)
class _Feature:
    kind: str  # "bias", "numeric" or "onehot"
    name: str
    value: str = ""


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """An ordered list of feature names; the order is the model's column order.

    - ``"bias"``: the constant 1.
    - ``"name"``: a number, ``context[name]`` if present, else the numeric attribute
      ``name`` (booleans are 0/1), else 0.
    - ``"name=value"``: one-hot, 1 when attribute ``name`` equals ``value`` as text
      (booleans as ``true``/``false``; for a list attribute, when it contains ``value``),
      else 0.

    Names must be unique and non-empty; ``InvalidArgument`` otherwise.
    """

    names: tuple[str, ...]
    _parsed: tuple[_Feature, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(self.names)
        if len(set(names)) != len(names):
            raise InvalidArgument("feature_names", "must be unique")
        parsed: list[_Feature] = []
        for i, name in enumerate(names):
            if not name or name.startswith("="):
                raise InvalidArgument(f"feature_names[{i}]", "must be a non-empty name")
            if name == BIAS:
                parsed.append(_Feature("bias", name))
            elif "=" in name:
                attr, value = name.split("=", 1)
                parsed.append(_Feature("onehot", attr, value))
            else:
                parsed.append(_Feature("numeric", name))
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "_parsed", tuple(parsed))

    @classmethod
    def build(
        cls,
        numeric: Sequence[str] = (),
        categorical: Mapping[str, Sequence[object]] | None = None,
        *,
        bias: bool = True,
    ) -> FeatureSpec:
        """Names in a stable order: bias, then numeric features, then one-hot levels."""
        names = [BIAS] if bias else []
        names.extend(numeric)
        for attr, levels in (categorical or {}).items():
            names.extend(f"{attr}={_as_text(level)}" for level in levels)
        return cls(tuple(names))

    def __len__(self) -> int:
        return len(self.names)


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a Struct number 3.0 matches the level "3"
    return str(value)


def _number(source: str, name: str, value: object) -> float:
    """``value`` as a float within ±MAX_MAGNITUDE; ``InvalidArgument`` on ``<source>.<name>``."""
    if type(value) is float and -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:  # the usual case
        return value
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        number = float(value)
        if -MAX_MAGNITUDE <= number <= MAX_MAGNITUDE:  # false for nan and infinities too
            return number
    raise InvalidArgument(
        f"{source}.{name}", f"must be a number within ±{MAX_MAGNITUDE:g}, got {value!r}"
    )


def featurize(
    context: Mapping[str, float],
    attributes: Mapping[str, object],
    feature_names: FeatureSpec | Sequence[str],
) -> NDArray[np.float64]:
    """Build one request's feature vector, in the order of ``feature_names`` (see FeatureSpec).

    A missing value is 0, as is a one-hot level that does not match. Raises
    ``InvalidArgument`` (field ``context.<name>`` or ``attributes.<name>``) when a numeric
    feature's value is not a finite number.
    """
    spec = (
        feature_names
        if isinstance(feature_names, FeatureSpec)
        else FeatureSpec(tuple(feature_names))
    )
    values: list[float] = []
    for feat in spec._parsed:
        if feat.kind == "numeric":
            given = context.get(feat.name)
            if given is not None:
                values.append(_number("context", feat.name, given))
            else:
                raw = attributes.get(feat.name)
                values.append(0.0 if raw is None else _number("attributes", feat.name, raw))
        elif feat.kind == "bias":
            values.append(1.0)
        else:
            raw = attributes.get(feat.name)
            levels = raw if isinstance(raw, list | tuple) else [raw]
            values.append(float(any(v is not None and _as_text(v) == feat.value for v in levels)))
    return np.array(values, dtype=np.float64)


def featurize_batch(
    contexts: Sequence[Mapping[str, float]],
    attributes: Sequence[Mapping[str, object]],
    feature_names: FeatureSpec | Sequence[str],
) -> NDArray[np.float64]:
    """:func:`featurize` for ``n`` units (parallel sequences), shape ``(n, d)``."""
    if len(contexts) != len(attributes):
        raise InvalidArgument("attributes", "must be parallel to contexts")
    spec = (
        feature_names
        if isinstance(feature_names, FeatureSpec)
        else FeatureSpec(tuple(feature_names))
    )
    if not contexts:
        return np.zeros((0, len(spec)))
    return np.stack([featurize(c, a, spec) for c, a in zip(contexts, attributes, strict=True)])
