"""Paired significance tests over per-query values, and corrections for multiple comparisons.

No scipy at run time: Student's t distribution through the regularized incomplete beta function
(Lentz's continued fraction), the normal distribution through ``math.erfc``, the exact null
distribution of Wilcoxon's statistic by counting. Each test matches ``scipy.stats`` on the same values
(``ttest_rel``; ``wilcoxon`` with its defaults: zeros dropped, no continuity correction, exact for up
to 50 pairs without ties or zeros, every sign assignment enumerated for up to 13 pairs with them, the
normal approximation with the tie correction otherwise). The randomization test is Fisher's, as
Smucker et al. (CIKM 2007) use it and ranx computes it: the share of random sign flips of the
per-query differences whose mean is at least as far from 0 as the observed one.
"""

from __future__ import annotations

import math

import numpy as np

TESTS = ("t", "randomization", "wilcoxon")
CORRECTIONS = ("holm", "bonferroni", "none")
DEFAULT_PERMUTATIONS = 10_000


def _betacf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf2(t: float, df: float) -> float:
    """Two-sided tail probability of Student's t: P(|T| >= |t|)."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_ppf(q: float, df: float) -> float:
    """The q-quantile of Student's t (q > 0.5), by bisection on the two-sided tail."""
    target = 2.0 * (1.0 - q)
    lo, hi = 0.0, 1.0
    while t_sf2(hi, df) > target:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_sf2(mid, df) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def paired_t(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided paired t-test p-value (``scipy.stats.ttest_rel``); 1.0 when every difference is 0."""
    d = np.asarray(y, np.float64) - np.asarray(x, np.float64)
    n = len(d)
    if n < 2:
        return 1.0
    sd = float(d.std(ddof=1))
    mean = float(d.mean())
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    return t_sf2(mean / (sd / math.sqrt(n)), n - 1)


def mean_ci(x: np.ndarray, y: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of the paired differences (y - x) and its t-based confidence interval."""
    d = np.asarray(y, np.float64) - np.asarray(x, np.float64)
    n = len(d)
    mean = float(d.mean()) if n else 0.0
    if n < 2:
        return mean, mean, mean
    half = t_ppf(0.5 + level / 2.0, n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half


def randomization(x: np.ndarray, y: np.ndarray, permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0) -> float:
    """Fisher's randomization test: the share of sign flips whose |mean difference| is at least the observed."""
    d = np.asarray(y, np.float64) - np.asarray(x, np.float64)
    if not len(d):
        return 1.0
    observed = abs(d.mean())
    rng = np.random.default_rng(seed)
    hits = 0
    block = max(1, min(permutations, 2_000_000 // max(1, len(d))))
    done = 0
    while done < permutations:
        m = min(block, permutations - done)
        signs = rng.integers(0, 2, size=(m, len(d)), dtype=np.int8) * 2 - 1
        means = np.abs(signs @ d) / len(d)
        hits += int((means >= observed - 1e-12 * max(1.0, observed)).sum())
        done += m
    return hits / permutations


def _wilcoxon_exact_counts(n: int) -> np.ndarray:
    """Number of sign assignments of ranks 1..n giving each value of W+ (0 .. n(n+1)/2)."""
    counts = np.zeros(n * (n + 1) // 2 + 1, dtype=np.float64)
    counts[0] = 1.0
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    return counts


def _ranks(a: np.ndarray) -> tuple[np.ndarray, bool]:
    order = np.argsort(a, kind="mergesort")
    sa = a[order]
    ranks = np.empty(len(a), np.float64)
    i = 0
    ties = False
    while i < len(a):
        j = i
        while j + 1 < len(a) and sa[j + 1] == sa[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        ties = ties or j > i
        i = j + 1
    return ranks, ties


def _w_plus(d: np.ndarray) -> tuple[float, float, float, bool]:
    """(W+, mean, sd under the null, ties) of Wilcoxon's statistic, zeros dropped."""
    nz = d[d != 0]
    count = len(nz)
    ranks, ties = _ranks(np.abs(nz))
    w_plus = float(ranks[nz > 0].sum())
    mn = count * (count + 1.0) * 0.25
    _, tie_counts = np.unique(np.abs(nz), return_counts=True)
    se = count * (count + 1.0) * (2.0 * count + 1.0)
    se = math.sqrt(max(0.0, (se - float((tie_counts.astype(np.float64) ** 3 - tie_counts).sum()) / 2.0) / 24.0))
    return w_plus, mn, se, ties


def wilcoxon(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value, as ``scipy.stats.wilcoxon(x, y)`` computes it."""
    d = np.asarray(x, np.float64) - np.asarray(y, np.float64)
    n = len(d)
    if n == 0 or not np.any(d != 0):
        return 1.0
    n_zero = int((d == 0).sum())
    w_plus, mn, se, ties = _w_plus(d)
    if n <= 50 and not ties and n_zero == 0:
        counts = _wilcoxon_exact_counts(n)
        total = counts.sum()
        cdf = np.cumsum(counts) / total
        sf = 1.0 - np.concatenate(([0.0], cdf[:-1]))  # P(W >= w)
        lo = cdf[math.ceil(w_plus)]
        hi = sf[math.floor(w_plus)]
        return float(min(1.0, 2.0 * min(lo, hi)))
    if n <= 13:  # every sign assignment, as scipy's permutation test does for so few pairs
        stats = []
        for mask in range(1 << n):
            signs = np.array([-1.0 if mask >> i & 1 else 1.0 for i in range(n)])
            stats.append(_w_plus(d * signs)[0])
        null = np.asarray(stats)
        eps = 1e-14 * max(1.0, abs(w_plus))
        less = float((null <= w_plus + eps).mean())
        greater = float((null >= w_plus - eps).mean())
        return float(min(1.0, 2.0 * min(less, greater)))
    if se == 0:
        return 1.0
    z = (w_plus - mn) / se
    return float(math.erfc(abs(z) / math.sqrt(2.0)))


def correct(pvalues: list[float], method: str) -> list[float]:
    """Adjusted p-values: Holm's step-down, Bonferroni, or none."""
    m = len(pvalues)
    if method == "none" or m <= 1:
        return list(pvalues)
    if method == "bonferroni":
        return [min(1.0, p * m) for p in pvalues]
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def p_value(test: str, x: np.ndarray, y: np.ndarray, permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0) -> float:
    if test == "t":
        return paired_t(x, y)
    if test == "wilcoxon":
        return wilcoxon(x, y)
    return randomization(x, y, permutations, seed)
