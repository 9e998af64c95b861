"""Statistics behind the paper's measurements, in forms that work on streamed blocks of a T x K matrix."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

TAIL_SIGMAS = 3.0  # "tail" = |LCA| beyond 3 standard deviations, for the heavy-tail share


class StreamingMoments:
    """Mean, variance, skewness and kurtosis of a stream of values, merged block by block
    (Pébay's pairwise update in float64, stable for the ~1e9 values of a large run)."""

    def __init__(self):
        self.n, self.mean, self.m2, self.m3, self.m4 = 0, 0.0, 0.0, 0.0, 0.0

    def update(self, values: np.ndarray) -> None:
        x = np.asarray(values, dtype=np.float64).ravel()
        nb = x.size
        if nb == 0:
            return
        mb = x.mean()
        d = x - mb
        m2b, m3b, m4b = (d**2).sum(), (d**3).sum(), (d**4).sum()
        na, n = self.n, self.n + nb
        delta = mb - self.mean
        m4 = (
            self.m4
            + m4b
            + delta**4 * na * nb * (na * na - na * nb + nb * nb) / n**3
            + 6 * delta**2 * (na * na * m2b + nb * nb * self.m2) / n**2
            + 4 * delta * (na * m3b - nb * self.m3) / n
        )
        m3 = self.m3 + m3b + delta**3 * na * nb * (na - nb) / n**2 + 3 * delta * (na * m2b - nb * self.m2) / n
        self.m2 += m2b + delta**2 * na * nb / n
        self.m3, self.m4 = m3, m4
        self.mean += delta * nb / n
        self.n = n

    @property
    def var(self) -> float:
        return self.m2 / self.n if self.n else math.nan

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    @property
    def kurtosis(self) -> float:
        """Pearson kurtosis m4 / m2^2 (3 for a Gaussian), the biased estimator as scipy.stats.kurtosis."""
        return self.n * self.m4 / self.m2**2 if self.m2 > 0 else math.nan

    @property
    def skewness(self) -> float:
        return math.sqrt(self.n) * self.m3 / self.m2**1.5 if self.m2 > 0 else math.nan


def kurtosis_test(b2: float, n: int) -> tuple[float, float]:
    """Anscombe-Glynn test that a sample with Pearson kurtosis b2 and size n comes from a Gaussian
    (two-sided z and p; the test of scipy.stats.kurtosistest, computed from b2 and n only so that a
    streamed sample can be tested)."""
    if n < 5 or not math.isfinite(b2):
        return math.nan, math.nan
    e = 3.0 * (n - 1) / (n + 1)
    var_b2 = 24.0 * n * (n - 2) * (n - 3) / ((n + 1) ** 2 * (n + 3) * (n + 5))
    x = (b2 - e) / math.sqrt(var_b2)
    sqrt_beta1 = 6.0 * (n * n - 5 * n + 2) / ((n + 7) * (n + 9)) * math.sqrt(6.0 * (n + 3) * (n + 5) / (n * (n - 2) * (n - 3)))
    a = 6.0 + 8.0 / sqrt_beta1 * (2.0 / sqrt_beta1 + math.sqrt(1 + 4.0 / sqrt_beta1**2))
    term1 = 1 - 2 / (9.0 * a)
    denom = 1 + x * math.sqrt(2 / (a - 4.0))
    term2 = math.copysign(1, denom) * ((1 - 2.0 / a) / abs(denom)) ** (1 / 3) if denom != 0 else math.nan
    z = (term1 - term2) / math.sqrt(2 / (9.0 * a))
    return float(z), float(2 * sps.norm.sf(abs(z)))


def gaussian_tail_share(k_sigma: float) -> float:
    """Share of E|X| that comes from |X| > k sigma for a zero-mean Gaussian: exp(-k^2 / 2)."""
    return math.exp(-0.5 * k_sigma**2)


class Reservoir:
    """A uniform random sample of at most `size` values from a stream, reproducible from its seed."""

    def __init__(self, size: int, seed: int = 0):
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.keys = np.empty(0)
        self.values = np.empty(0)

    def update(self, values: np.ndarray) -> None:
        x = np.asarray(values, dtype=np.float64).ravel()
        # keep the `size` values with the smallest random keys: a uniform sample of everything seen
        new_keys = self.rng.random(x.size)
        if self.keys.size == self.size:  # full: only keys below the largest kept one can enter
            entering = new_keys < self.keys.max()
            new_keys, x = new_keys[entering], x[entering]
        keys = np.concatenate([self.keys, new_keys])
        vals = np.concatenate([self.values, x])
        if keys.size > self.size:
            keep = np.argpartition(keys, self.size)[: self.size]
            keep.sort()
            keys, vals = keys[keep], vals[keep]
        self.keys, self.values = keys, vals


def weibull_fit(magnitudes: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood Weibull (shape k, scale) of positive values, location fixed at 0.
    k < 1 means a heavier tail than the exponential distribution."""
    x = np.asarray(magnitudes, dtype=np.float64)
    x = x[x > 0]
    if x.size < 10:
        return math.nan, math.nan
    # scale to order 1 first: the optimiser is happier, and k does not depend on the unit
    unit = np.median(x)
    k, _, scale = sps.weibull_min.fit(x / unit, floc=0)
    return float(k), float(scale * unit)


def local_extrema(x: np.ndarray, kind: str = "min") -> np.ndarray:
    """Indices t (1 <= t <= T-2) where x[t] is strictly below (kind='min') or above ('max') both neighbours."""
    x = np.asarray(x, dtype=np.float64)
    if x.size < 3:
        return np.empty(0, dtype=np.int64)
    s = x if kind == "min" else -x
    inner = (s[1:-1] < s[:-2]) & (s[1:-1] < s[2:])
    return np.flatnonzero(inner) + 1


def top_moments(x: np.ndarray, n: int = 20, kind: str = "min") -> np.ndarray:
    """The paper's "moments of learning": the n local minima of a per-iteration LCA curve with the most
    negative values (kind='min'), or the n local maxima with the largest values (kind='max', for
    gradient strength and motion). Sorted by iteration."""
    idx = local_extrema(x, kind)
    order = np.argsort(x[idx] if kind == "min" else -x[idx], kind="stable")
    return np.sort(idx[order[:n]])


def required_layers(n_layers: int, min_fraction: float) -> int:
    """How many layers must share an iteration for it to count as synchronised."""
    return max(1, math.ceil(min_fraction * n_layers - 1e-9))


def count_synchronized(moment_sets: list[np.ndarray], min_fraction: float = 1.0) -> int:
    """Iterations that are moments in at least `min_fraction` of the layers (1.0: in every layer)."""
    if not moment_sets:
        return 0
    counts = np.bincount(np.concatenate([np.unique(m) for m in moment_sets]).astype(np.int64))
    return int((counts >= required_layers(len(moment_sets), min_fraction)).sum())


def shift_baseline(
    groups: list[list[np.ndarray]], max_shift: int = 2, repeats: int = 10000, seed: int = 0, min_fraction: float = 1.0
) -> tuple[int, np.ndarray, float]:
    """The paper's baseline for synchronised moments: shift each layer's moments (in every group, e.g.
    every class) by a random whole number of iterations in [-max_shift, max_shift] and count the
    synchronised iterations again. Draws in which all layers of a group get the same shift are drawn
    again: they only translate the observed pattern, so keeping them would put a floor of
    (2 max_shift + 1)^-(layers - 1) under the p-value however strong the synchronisation.
    Returns (observed total over groups, baseline totals per repeat, one-sided p-value with the +1
    correction: (1 + #{baseline >= observed}) / (1 + repeats))."""
    observed = sum(count_synchronized(g, min_fraction) for g in groups)
    rng = np.random.default_rng(seed)
    totals = np.zeros(repeats, dtype=np.int64)
    for g in groups:
        L = len(g)
        if L == 0 or not any(len(m) for m in g):
            continue
        need = required_layers(L, min_fraction)
        span = max(int(m.max()) for m in g if len(m)) + 2 * max_shift + 1
        shifts = rng.integers(-max_shift, max_shift + 1, size=(repeats, L))
        while L > 1 and (same := (shifts == shifts[:, :1]).all(1)).any():
            shifts[same] = rng.integers(-max_shift, max_shift + 1, size=(int(same.sum()), L))
        hits = np.zeros((repeats, span), dtype=np.int16)
        rows = np.arange(repeats)[:, None]
        for layer, m in enumerate(g):
            if len(m):
                np.add.at(hits, (rows, np.unique(m)[None, :] + shifts[:, layer : layer + 1] + max_shift), 1)
        totals += (hits >= need).sum(1)
    p = (1 + int((totals >= observed).sum())) / (1 + repeats)
    return observed, totals, p


def mean_pairwise_correlation(series: np.ndarray) -> float:
    """Mean Pearson correlation over all pairs of columns of a (T, m) matrix; constant columns are left out."""
    x = np.asarray(series, dtype=np.float64)
    x = x[:, x.std(0) > 0]
    m = x.shape[1]
    if m < 2:
        return math.nan
    c = np.corrcoef(x, rowvar=False)
    return float((c.sum() - m) / (m * (m - 1)))


def top_class_shares(help_by_class: np.ndarray, top: int = 3) -> np.ndarray:
    """For each row (a neuron) of amounts helped per class (>= 0), the share of the total help that its
    top 1..top classes account for. Rows that helped no class get NaN."""
    h = np.clip(np.asarray(help_by_class, dtype=np.float64), 0, None)
    total = h.sum(1, keepdims=True)
    ordered = -np.sort(-h, axis=1)[:, :top]
    ordered = np.pad(ordered, ((0, 0), (0, top - ordered.shape[1])))  # fewer classes than `top`: all of it
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.cumsum(ordered, axis=1) / total, np.nan)


def one_sample_t(values: np.ndarray) -> tuple[float, float]:
    """Two-sided one-sample t-test of mean == 0 (NaN when fewer than 2 values or no spread)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2 or np.all(v == v[0]):
        return math.nan, math.nan
    r = sps.ttest_1samp(v, 0.0)
    return float(r.statistic), float(r.pvalue)


def welch_t(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sided Welch two-sample t-test (unequal variances); NaN when a side has fewer than 2 values."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or b.size < 2 or (a.std() == 0 and b.std() == 0):
        return math.nan, math.nan
    r = sps.ttest_ind(a, b, equal_var=False)
    return float(r.statistic), float(r.pvalue)
