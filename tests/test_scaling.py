"""Scaling-law fits (Chinchilla's approaches 2 and 3): the fit recovers known constants from synthetic
losses, the closed-form optimum equals the numeric IsoFLOP minimum, and the published check
values reproduce."""

import numpy as np
import pytest

from cockpit.analysis.scaling import EPOCH, HOFFMANN, NAMES, fit_isoflop, fit_law

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


@pytest.mark.parametrize("law", [HOFFMANN, EPOCH], ids=["hoffmann", "epoch"])
def test_isoflop_parabolas_recover_the_laws_exponents(law):
    # FLOP-matched groups of 7 sizes around each budget's optimum, losses from the law itself:
    # Approach 2's exponents are β/(α+β) and α/(α+β), its minima near the closed form
    n, d, f, loss = [], [], [], []
    for c in (1e18, 1e19, 1e20):
        n_opt = law.optimal(c)[0]
        for size in np.geomspace(n_opt / 4, n_opt * 4, 7):
            n.append(size), d.append(c / 6 / size), f.append(c * (1 + 0.05 * (len(n) % 3 - 1))), loss.append(
                float(law.loss(size, c / 6 / size)))
    fit = fit_isoflop(n, d, f, loss)
    assert len(fit.curves) == 3 and all(c.inside for c in fit.curves)
    assert fit.a == pytest.approx(law.beta / (law.alpha + law.beta), abs=0.01)
    assert fit.b == pytest.approx(law.alpha / (law.alpha + law.beta), abs=0.01)
    for c in fit.curves:
        assert c.n_opt == pytest.approx(law.optimal(c.flops)[0], rel=0.05)


def test_isoflop_groups_need_three_sizes_at_one_budget():
    assert fit_isoflop([1, 2, 1, 2], [1, 1, 2, 2], [1e10, 1e10, 2e10, 2e10], [3, 2, 3, 2]) is None
    # a curve falling all the way has no minimum and is not used for the exponents
    fit = fit_isoflop([1e3, 1e4, 1e5], [1e5, 1e4, 1e3], [6e8] * 3, [3.0, 2.5, 2.3])
    assert fit.curves[0].n_opt != fit.curves[0].n_opt or not fit.curves[0].inside
    assert fit.a != fit.a  # NaN: no exponent from fewer than two usable curves


def test_lr_fit_finds_each_sizes_minimum_and_the_width_exponent():
    from types import SimpleNamespace as P

    from cockpit.analysis.lr import fit_lr

    points = []
    for width, params in ((64, 1_000), (128, 4_000), (256, 16_000)):
        best = 0.02 * (width / 64) ** -0.75  # lr_opt ∝ width^-0.75
        for lr in np.geomspace(best / 8, best * 4, 5):
            points.append(P(params_total=params, width=width, lr=float(lr),
                            loss=3.0 + 0.1 * np.log10(lr / best) ** 2))
    points.append(P(params_total=99, width=32, lr=1e-3, loss=3.0))  # one rate: reported, not fitted
    fit = fit_lr(points)
    assert [s.width for s in fit.sizes] == [32, 64, 128, 256]
    assert not fit.sizes[0].usable and "1 learning rate" in fit.sizes[0].why
    for s, w in zip(fit.sizes[1:], (64, 128, 256)):
        assert s.lr_opt == pytest.approx(0.02 * (w / 64) ** -0.75, rel=1e-6)
    assert fit.exponent == pytest.approx(-0.75, abs=1e-6)
    # a minimum beyond the rates tried is named as such, not used
    edge = fit_lr([P(params_total=1, width=64, lr=lr, loss=3 - 0.1 * np.log10(lr) + 0.01 * np.log10(lr) ** 2)
                   for lr in (1e-4, 1e-3, 1e-2)])
    assert "above the rates tried" in edge.sizes[0].why
