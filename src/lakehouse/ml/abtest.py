"""Reading out an A/B test of two models on a proportion (the share of payments flagged, of
frauds caught...): the two-proportion z-test with a confidence interval of the difference, the
power of a test and the sample size it needs (for an unequal split such as 90/10), and a
simulation of what peeking at the results early does to the false positive rate.

Example::

    from lakehouse.ml import abtest

    result = abtest.two_proportion_test(flagged_a, n_a, flagged_b, n_b)
    result.p_value, (result.low, result.high)          # the difference p_b - p_a and its CI
    abtest.sample_size(0.05, 0.06, ratio=1 / 9)        # requests per arm for 80% power
    peeking = abtest.simulate_peeking(p=0.05, n_per_arm=2_000, looks=40)

Formulas: the z statistic uses the pooled proportion (what the null hypothesis says), the
interval of the difference is Newcombe's hybrid score interval (built from each arm's Wilson
interval); the sample size is the normal approximation for
two independent proportions with allocation ratio ``n_b / n_a``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

DECISIONS = ("challenger higher", "no detectable difference", "challenger lower")


@dataclass(frozen=True)
class TwoProportionResult:
    """A two-sided two-proportion z-test of arm B against arm A."""

    successes_a: int
    n_a: int
    successes_b: int
    n_b: int
    z: float
    p_value: float
    low: float  # the interval of p_b - p_a
    high: float
    confidence: float

    @property
    def p_a(self) -> float:
        return self.successes_a / self.n_a

    @property
    def p_b(self) -> float:
        return self.successes_b / self.n_b

    @property
    def difference(self) -> float:
        return self.p_b - self.p_a

    def decision(self) -> str:
        """One of :data:`DECISIONS`, from the interval: a difference is detected only when the
        interval excludes zero."""
        if self.low > 0:
            return DECISIONS[0]
        if self.high < 0:
            return DECISIONS[2]
        return DECISIONS[1]

    def summary(self) -> str:
        return (
            f"A {self.successes_a}/{self.n_a} = {self.p_a:.2%}, B {self.successes_b}/{self.n_b} = "
            f"{self.p_b:.2%}: difference {self.difference:+.2%}, {self.confidence:.0%} CI "
            f"[{self.low:+.2%}, {self.high:+.2%}], z = {self.z:.2f}, p = {self.p_value:.3f}"
        )


def _counts(successes: int, n: int, arm: str) -> tuple[int, int]:
    successes, n = int(successes), int(n)
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(
            f"arm {arm}: {successes} successes of {n}: need 0 <= successes <= n and n > 0"
        )
    return successes, n


def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of one proportion: unlike ``p ± z·SE`` it stays inside
    [0, 1] and keeps its coverage at 0 or n successes (0 of 28 is not "exactly 0%")."""
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    p = successes / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return float(centre - half), float(centre + half)


def two_proportion_test(
    successes_a: int, n_a: int, successes_b: int, n_b: int, *, confidence: float = 0.95
) -> TwoProportionResult:
    """The two-sided z-test of ``p_b = p_a`` (pooled standard error) and the ``confidence``
    interval of ``p_b - p_a`` by Newcombe's hybrid score method (from each arm's Wilson
    interval: good coverage with small arms and rare events, where the Wald interval
    ``d ± z·SE`` collapses)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence}: give a level in (0, 1), e.g. 0.95")
    x_a, n_a = _counts(successes_a, n_a, "A")
    x_b, n_b = _counts(successes_b, n_b, "B")
    p_a, p_b = x_a / n_a, x_b / n_b
    pooled = (x_a + x_b) / (n_a + n_b)
    se_null = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = (p_b - p_a) / se_null if se_null > 0 else 0.0
    p_value = float(2 * stats.norm.sf(abs(z)))
    low_a, high_a = wilson_interval(x_a, n_a, confidence=confidence)
    low_b, high_b = wilson_interval(x_b, n_b, confidence=confidence)
    difference = p_b - p_a
    low = difference - np.sqrt((p_b - low_b) ** 2 + (high_a - p_a) ** 2)
    high = difference + np.sqrt((high_b - p_b) ** 2 + (p_a - low_a) ** 2)
    return TwoProportionResult(
        *(x_a, n_a, x_b, n_b, float(z), p_value), float(low), float(high), confidence
    )


def power(p_a: float, p_b: float, n_a: int, n_b: int, *, alpha: float = 0.05) -> float:
    """The probability that the two-sided test at level ``alpha`` detects a true difference
    ``p_b - p_a`` with ``n_a`` and ``n_b`` observations (normal approximation; the far tail,
    negligible, is left out)."""
    _check_rates(p_a, p_b)
    pooled = (n_a * p_a + n_b * p_b) / (n_a + n_b)
    se_null = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    se = np.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    z_alpha = stats.norm.ppf(1 - alpha / 2)
    return float(stats.norm.cdf((abs(p_b - p_a) - z_alpha * se_null) / se))


def _check_rates(p_a: float, p_b: float) -> None:
    for name, p in (("p_a", p_a), ("p_b", p_b)):
        if not 0 < p < 1:
            raise ValueError(f"{name} = {p}: a rate strictly between 0 and 1")
    if p_a == p_b:
        raise ValueError("p_a == p_b: no difference to detect; give the smallest one that matters")


def sample_size(
    p_a: float, p_b: float, *, alpha: float = 0.05, power: float = 0.80, ratio: float = 1.0
) -> tuple[int, int]:
    """The observations ``(n_a, n_b)`` (``n_b = ratio * n_a``; 90/10 in favour of A is
    ``ratio = 1/9``) a two-sided test at level ``alpha`` needs to detect ``p_b - p_a`` with
    probability ``power``."""
    _check_rates(p_a, p_b)
    if ratio <= 0:
        raise ValueError(f"ratio {ratio}: n_b / n_a must be positive (1/9 for a 90/10 split)")
    z_alpha, z_beta = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    pooled = (p_a + ratio * p_b) / (1 + ratio)
    root = z_alpha * np.sqrt(pooled * (1 - pooled) * (1 + 1 / ratio)) + z_beta * np.sqrt(
        p_a * (1 - p_a) + p_b * (1 - p_b) / ratio
    )
    n_a = int(np.ceil(root**2 / (p_b - p_a) ** 2))
    return n_a, int(np.ceil(ratio * n_a))


# --------------------------------------------------------------------------- peeking


@dataclass(frozen=True)
class PeekingResult:
    """A/A experiments (both arms with the same rate) checked at ``looks`` evenly spaced
    moments: the share that reached p < alpha at the end only, and at any look before."""

    looks: np.ndarray  # observations per arm at each look
    p_values: np.ndarray  # (simulations, looks)
    alpha: float

    @property
    def fixed_horizon_rate(self) -> float:
        """False positives when the test is read once, at the planned sample size."""
        return float((self.p_values[:, -1] < self.alpha).mean())

    @property
    def peeking_rate(self) -> float:
        """False positives when the experiment stops at the first look with p < alpha."""
        return float((self.p_values < self.alpha).any(axis=1).mean())

    def rate_by_looks(self) -> np.ndarray:
        """The false positive rate of stopping at the first p < alpha among the first k looks,
        for k = 1 .. looks."""
        return (np.minimum.accumulate(self.p_values, axis=1) < self.alpha).mean(axis=0)


def simulate_peeking(
    *,
    p: float = 0.05,
    n_per_arm: int = 2_000,
    looks: int = 20,
    simulations: int = 4_000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PeekingResult:
    """``simulations`` A/A tests of ``n_per_arm`` observations per arm at rate ``p``, checked
    with :func:`two_proportion_test`'s z statistic at ``looks`` evenly spaced moments.
    Vectorised: each arm's successes between two looks are one binomial draw. Seeded."""
    if looks < 1 or n_per_arm < looks:
        raise ValueError(f"looks {looks}, n_per_arm {n_per_arm}: need 1 <= looks <= n_per_arm")
    rng = np.random.default_rng(seed)
    edges = np.linspace(0, n_per_arm, looks + 1).round().astype(int)
    step = np.diff(edges)
    a = rng.binomial(step, p, size=(simulations, looks)).cumsum(axis=1)
    b = rng.binomial(step, p, size=(simulations, looks)).cumsum(axis=1)
    n = edges[1:].astype("float64")
    pooled = (a + b) / (2 * n)
    se = np.sqrt(pooled * (1 - pooled) * (2 / n))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (b - a) / n / se, 0.0)
    return PeekingResult(edges[1:], 2 * stats.norm.sf(np.abs(z)), alpha)


# --------------------------------------------------------------------------- checks


def check_readout(result, decision: str, counts: dict[str, tuple[int, int]]) -> str:
    """Assert that ``result`` tests the arms' served counts (``counts``: alias -> (flagged,
    requests), from the served rows only), the champion as A and the challenger as B, and that
    ``decision`` follows the interval. Returns one line."""
    assert isinstance(result, TwoProportionResult), (
        f"got {type(result).__name__}: build it with abtest.two_proportion_test(...)"
    )
    (x_a, n_a), (x_b, n_b) = counts["champion"], counts["challenger"]
    if (result.n_a, result.n_b) == (n_b, n_a):
        raise AssertionError(
            "the arms are swapped: A is the champion, B the challenger (the difference is "
            "challenger - champion)"
        )
    if result.n_b > n_b or result.n_a > n_a:
        raise AssertionError(
            f"the test counts {result.n_a} and {result.n_b} requests, but the arms served {n_a} "
            f"and {n_b}: count the rows with role == 'served' only; a shadow score was never "
            "acted on, so it is not part of the challenger's arm"
        )
    got = (result.successes_a, result.n_a, result.successes_b, result.n_b)
    assert got == (x_a, n_a, x_b, n_b), (
        f"the test reads {result.successes_a}/{result.n_a} and {result.successes_b}/{result.n_b},"
        f" the served rows give {x_a}/{n_a} and {x_b}/{n_b}: flagged and requests per arm"
    )
    want = result.decision()
    assert decision == want, (
        f"decision {decision!r}, but the {result.confidence:.0%} interval of the difference is "
        f"[{result.low:+.2%}, {result.high:+.2%}]: {want!r}. A difference of point estimates is "
        "not a finding until the interval excludes zero"
    )
    return f"readout: {want} ({result.summary()})"


def check_peeking(result: PeekingResult, *, alpha: float = 0.05) -> str:
    """Assert that the simulation shows what it claims: at the fixed horizon the false
    positive rate is alpha (within four standard errors of the simulation), and stopping at the
    first p < alpha makes it clearly larger. Returns one line."""
    n = result.p_values.shape[0]
    spread = 4 * np.sqrt(alpha * (1 - alpha) / n)
    fixed, peeking = result.fixed_horizon_rate, result.peeking_rate
    assert abs(fixed - alpha) <= spread, (
        f"the fixed-horizon false positive rate is {fixed:.1%}, not {alpha:.0%} ± {spread:.1%}: "
        "simulate A/A tests (both arms at the same rate) and read each once, at the end"
    )
    assert peeking > fixed + spread, (
        f"peeking at {len(result.looks)} looks gives {peeking:.1%}, no more than the fixed "
        f"horizon's {fixed:.1%}: a test is stopped at the first look with p < alpha, any look"
    )
    return (
        f"A/A tests: {fixed:.1%} false positives read once at the end, {peeking:.1%} when "
        f"stopped at the first p < {alpha} among {len(result.looks)} looks"
    )


__all__ = [
    "DECISIONS",
    "PeekingResult",
    "TwoProportionResult",
    "check_peeking",
    "check_readout",
    "power",
    "sample_size",
    "simulate_peeking",
    "two_proportion_test",
    "wilson_interval",
]
