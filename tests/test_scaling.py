"""Scaling-law fits (RESEARCH.md section 11): the fit recovers known constants from synthetic
losses, the closed-form optimum equals the numeric IsoFLOP minimum, and the published check
values reproduce."""

import numpy as np
import pytest

from cockpit.analysis.scaling import EPOCH, HOFFMANN, NAMES, fit_law

# 5 sizes x 3 token ratios, as a small sweep would give
N = np.repeat([1e7, 3e7, 1e8, 3e8, 1e9], 3)
D = N * np.tile([5.0, 20.0, 80.0], 5)


@pytest.mark.parametrize("law", [HOFFMANN, EPOCH], ids=["hoffmann", "epoch"])
def test_fit_recovers_the_constants_it_was_generated_from(law):
    got = fit_law(N, D, law.loss(N, D)).law
    for name in NAMES:
        assert getattr(got, name) == pytest.approx(getattr(law, name), rel=0.01), name


@pytest.mark.parametrize("flops", [1e17, 1e19, 5.76e23])
def test_closed_form_optimum_is_the_isoflop_minimum(flops):
    for law in (HOFFMANN, EPOCH):
        n, d = law.optimal(flops)
        n_num, d_num = law.optimal_numeric(flops)
        assert n == pytest.approx(n_num, rel=1e-4) and 6 * n * d == pytest.approx(flops)


def test_published_check_values():
    n, d = EPOCH.optimal(5.76e23)
    assert n == pytest.approx(7.2e10, rel=0.01) and d / n == pytest.approx(18.4, abs=0.05)
    n, d = HOFFMANN.optimal(1e19)
    assert d / n == pytest.approx(32.1, abs=0.05)
    n, d = EPOCH.optimal(1e19)
    assert d / n == pytest.approx(24.2, abs=0.05)


def test_bootstrap_intervals_cover_the_truth_on_noisy_losses():
    rng = np.random.default_rng(1)
    loss = EPOCH.loss(N, D) * np.exp(rng.normal(0.0, 0.005, len(N)))
    fit = fit_law(N, D, loss, bootstrap=20, seed=2)
    for name in ("alpha", "beta"):
        lo, hi = fit.intervals[name]
        assert lo < hi and lo <= getattr(EPOCH, name) <= hi, (name, lo, hi)
    (n_lo, n_hi), _ = fit.optimal_interval(1e19)
    n_fit, n_true = fit.law.optimal(1e19)[0], EPOCH.optimal(1e19)[0]
    assert n_lo < n_fit < n_hi and n_fit == pytest.approx(n_true, rel=0.1)


def test_too_few_runs_is_a_clear_error():
    with pytest.raises(ValueError, match="4 runs cannot determine 5 constants"):
        fit_law(N[:4], D[:4], EPOCH.loss(N[:4], D[:4]))
