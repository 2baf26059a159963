"""Chinchilla scaling laws (Hoffmann et al. 2022; Besiroglu et al. 2024's refit).

L(N, D) = E + A / N^α + B / D^β, fitted as Approach 3 does: minimize the *summed* Huber loss
(δ = 1e-3) between LSE(a − α log N, b − β log D, e) and log L, with A = e^a, B = e^b, E = e^e,
by L-BFGS from a grid of starting points, keeping the best. Bootstrap intervals refit on runs
drawn with replacement. With C ≈ 6ND the compute-optimal split has a closed form.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import huber, logsumexp

HUBER_DELTA = 1e-3
NAMES = ("E", "A", "B", "alpha", "beta")


@dataclass(frozen=True)
class Law:
    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, n, d):
        return self.E + self.A / np.asarray(n, float) ** self.alpha + self.B / np.asarray(d, float) ** self.beta

    def optimal(self, flops: float) -> tuple[float, float]:
        """(N_opt, D_opt) for a budget of C = 6·N·D FLOPs, in closed form; NaN when the law has
        no interior optimum (an exponent at 0: loss that does not fall with N or with D)."""
        if self.alpha <= 1e-9 or self.beta <= 1e-9 or self.A <= 0 or self.B <= 0:
            return math.nan, math.nan
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        n = g * (flops / 6.0) ** (self.beta / (self.alpha + self.beta))
        return n, flops / 6.0 / n

    def optimal_numeric(self, flops: float) -> tuple[float, float]:
        """The same minimum found numerically along the IsoFLOP curve (a check on the closed form)."""
        res = minimize_scalar(lambda logn: float(self.loss(np.exp(logn), flops / 6.0 / np.exp(logn))),
                              bounds=(np.log(1e2), np.log(flops / 6.0 / 1e2)), method="bounded",
                              options={"xatol": 1e-10})
        n = float(np.exp(res.x))
        return n, flops / 6.0 / n


# Hoffmann et al.'s headline exponents (0.34, 0.28; the check value D/N ≈ 32.1 at 1e19 uses
# these) and the unrounded ones (0.3392, 0.2849: D/N ≈ 22.8 there, which shows how touchy the split is)
HOFFMANN = Law(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
HOFFMANN_UNROUNDED = Law(E=1.69, A=406.4, B=410.7, alpha=0.3392, beta=0.2849)
EPOCH = Law(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)


def _objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray) -> tuple[float, np.ndarray]:
    """The summed Huber loss and its gradient (analytic: L-BFGS from many starts stays cheap)."""
    a, b, e, alpha, beta = theta
    z = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    pred = logsumexp(z, axis=0)
    w = np.exp(z - pred)  # softmax weights of the three terms
    r = pred - log_l
    dh = np.clip(r, -HUBER_DELTA, HUBER_DELTA)  # d huber / d r
    grad = np.array([np.sum(dh * w[0]), np.sum(dh * w[1]), np.sum(dh * w[2]),
                     -np.sum(dh * w[0] * log_n), -np.sum(dh * w[1] * log_d)])
    return float(np.sum(huber(HUBER_DELTA, r))), grad


# Starting points (Hoffmann et al. used a 4,500-point grid; with an analytic gradient 72 points
# that span the same ranges find the same minimum on their synthetic and on our runs' data)
GRID = [np.array(p, float) for p in itertools.product((0.0, 8.0, 16.0), (0.0, 8.0, 16.0), (-1.0, 0.5),
                                                      (0.25, 0.75), (0.25, 0.75))]


def _fit_theta(log_n, log_d, log_l, starts) -> tuple[np.ndarray, float]:
    """L-BFGS from every start with a loose tolerance, then the best three polished tightly."""
    def run(x0, ftol, maxiter):
        # the exponents stay >= 0 (a loss that grows with N or D is not a scaling law); a, b, e are free
        return minimize(_objective, x0, args=(log_n, log_d, log_l), jac=True, method="L-BFGS-B",
                        bounds=[(None, None)] * 3 + [(0.0, 10.0)] * 2,
                        options={"maxiter": maxiter, "ftol": ftol, "gtol": 1e-13 if ftol < 1e-12 else 1e-9})

    rough = sorted((run(x0, 1e-9, 300) for x0 in starts), key=lambda r: r.fun)[:3]
    best = min((run(r.x, 1e-15, 5000) for r in rough), key=lambda r: r.fun)
    return best.x, float(best.fun)


def _law(theta: np.ndarray) -> Law:
    a, b, e, alpha, beta = theta
    return Law(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=float(alpha), beta=float(beta))


@dataclass
class Fit:
    law: Law
    objective: float
    intervals: dict[str, tuple[float, float]]  # name -> (low, high), bootstrap percentiles
    samples: list[Law]  # the bootstrap refits (for intervals on derived quantities)
    n_runs: int

    def optimal_interval(self, flops: float, q: float = 0.9) -> tuple[tuple[float, float], tuple[float, float]]:
        """Bootstrap intervals of N_opt and D_opt at this budget."""
        if not self.samples:
            n, d = self.law.optimal(flops)
            return (n, n), (d, d)
        pairs = [s.optimal(flops) for s in self.samples]
        pairs = [(n, d) for n, d in pairs if math.isfinite(n)] or [(math.nan, math.nan)]
        ns, ds = zip(*pairs)
        lo, hi = 50 * (1 - q), 50 * (1 + q)
        return (float(np.percentile(ns, lo)), float(np.percentile(ns, hi))), \
            (float(np.percentile(ds, lo)), float(np.percentile(ds, hi)))


def fit_law(n, d, loss, bootstrap: int = 0, seed: int = 0, q: float = 0.9) -> Fit:
    """Fit L(N, D) to runs with N parameters, D training tokens and final loss L."""
    from threadpoolctl import threadpool_limits

    # thousands of tiny L-BFGS problems: BLAS threads only contend, and on a machine busy with
    # training they made the fit 3-40x slower (measured beside two CPU-bound processes)
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_law(n, d, loss, bootstrap, seed, q)


def _fit_law(n, d, loss, bootstrap: int, seed: int, q: float) -> Fit:
    log_n, log_d, log_l = (np.log(np.asarray(x, float)) for x in (n, d, loss))
    if len(log_n) < 5:
        raise ValueError(f"{len(log_n)} runs cannot determine 5 constants; a fit needs at least 5, and several "
                         f"sizes at several token budgets to be worth trusting")
    theta, val = _fit_theta(log_n, log_d, log_l, GRID)
    samples: list[Law] = []
    rng = np.random.default_rng(seed)
    starts = [theta, *GRID[:: len(GRID) // 4]]  # refits: from the full fit's answer and a few others
    for _ in range(bootstrap):
        idx = rng.integers(0, len(log_n), len(log_n))
        t, _ = _fit_theta(log_n[idx], log_d[idx], log_l[idx], starts)
        samples.append(_law(t))
    intervals = {}
    lo, hi = 50 * (1 - q), 50 * (1 + q)
    for name in NAMES:
        vals = [getattr(s, name) for s in samples] or [getattr(_law(theta), name)]
        intervals[name] = (float(np.percentile(vals, lo)), float(np.percentile(vals, hi)))
    return Fit(_law(theta), val, intervals, samples, len(log_n))


# --- Approach 2: IsoFLOP curves -------------------------------------------------------------

@dataclass
class IsoCurve:
    """Runs of (about) one compute budget: loss against log N, a parabola, and its vertex."""
    flops: float  # the group's median FLOPs
    n: list[float]
    d: list[float]
    loss: list[float]
    coef: tuple[float, float, float]  # loss ≈ c2·x² + c1·x + c0 with x = ln N
    n_opt: float  # the vertex (NaN when the parabola opens downwards: no minimum)
    d_opt: float  # tokens at the vertex (interpolated along the group's own runs)

    @property
    def edge(self) -> str:
        """'smallest' or 'largest' when the best run is at that end of the sizes (a minimum not
        bracketed by runs either side: a parabola through such points can still put a vertex
        inside, so it is not trusted); '' otherwise."""
        best = min(range(len(self.n)), key=lambda i: self.loss[i])
        return "smallest" if self.n[best] == min(self.n) else "largest" if self.n[best] == max(self.n) else ""

    @property
    def inside(self) -> bool:
        """The minimum lies within the sizes trained, with runs on both sides of it."""
        return math.isfinite(self.n_opt) and min(self.n) <= self.n_opt <= max(self.n) and not self.edge


@dataclass
class IsoFit:
    curves: list[IsoCurve]
    a: float  # N_opt ∝ C^a (NaN with fewer than 2 usable curves)
    b: float  # D_opt ∝ C^b
    log_k: float  # ln N_opt = log_k + a·ln C

    def optimal(self, flops: float) -> tuple[float, float]:
        if not math.isfinite(self.a):
            return math.nan, math.nan
        n = math.exp(self.log_k + self.a * math.log(flops))
        used = [c for c in self.curves if c.inside]
        # D from the curves' own D_opt trend (C/6N would ignore attention and head FLOPs)
        lc, ld = np.log([c.flops for c in used]), np.log([c.d_opt for c in used])
        slope, icpt = np.polyfit(lc, ld, 1)
        return n, float(math.exp(icpt + slope * math.log(flops)))


def isoflop_groups(flops, n, tol: float = 0.15, min_sizes: int = 3) -> list[list[int]]:
    """Indices of runs whose FLOPs agree within ±tol (relative), keeping groups with at least
    min_sizes distinct model sizes (a parabola needs three)."""
    order = sorted(range(len(flops)), key=lambda i: flops[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and flops[i] <= flops[groups[-1][0]] * (1 + tol) ** 2:
            groups[-1].append(i)
        else:
            groups.append([i])
    return [g for g in groups if len({n[i] for i in g}) >= min_sizes]


def fit_isoflop(n, d, flops, loss, tol: float = 0.15) -> IsoFit | None:
    """Approach 2: for each FLOP-matched group with 3+ sizes, a parabola of loss in ln N and its
    minimum; then N_opt ∝ C^a and D_opt ∝ C^b across the groups. None when no group qualifies."""
    n, d, flops, loss = (np.asarray(x, float) for x in (n, d, flops, loss))
    curves = []
    for g in isoflop_groups(list(flops), list(n), tol):
        x, y = np.log(n[g]), loss[g]
        c2, c1, c0 = np.polyfit(x, y, 2)
        n_opt = d_opt = math.nan
        if c2 > 0:
            x_opt = -c1 / (2 * c2)
            n_opt = math.exp(x_opt)
            srt = np.argsort(x)
            # ln D is (nearly) linear in ln N along an IsoFLOP curve: extend the group's own line
            s, i = np.polyfit(x[srt], np.log(d[g][srt]), 1)
            d_opt = math.exp(i + s * x_opt)
        curves.append(IsoCurve(float(np.median(flops[g])), n[g].tolist(), d[g].tolist(), y.tolist(),
                               (float(c2), float(c1), float(c0)), n_opt, d_opt))
    if not curves:
        return None
    used = [c for c in curves if c.inside]
    a = log_k = b = math.nan
    if len(used) >= 2:
        lc = np.log([c.flops for c in used])
        a, log_k = (float(v) for v in np.polyfit(lc, np.log([c.n_opt for c in used]), 1))
        b = float(np.polyfit(lc, np.log([c.d_opt for c in used]), 1)[0])
    return IsoFit(curves, a, b, log_k)
