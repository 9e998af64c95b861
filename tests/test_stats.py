"""Each statistic on data built so that the right answer is known."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from lcaflow import stats


def _blocks(x, size):
    return [x[i : i + size] for i in range(0, len(x), size)]


@pytest.mark.parametrize("dist", ["normal", "student3"])
def test_streaming_moments_match_the_whole_sample(dist):
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 3.0, 50_001) if dist == "normal" else rng.standard_t(3, 50_001) * 1e-4
    m = stats.StreamingMoments()
    for b in _blocks(x, 7_777):
        m.update(b)
    assert m.n == x.size
    assert m.mean == pytest.approx(x.mean(), rel=1e-12, abs=1e-15)
    assert m.var == pytest.approx(x.var(), rel=1e-10)
    assert m.skewness == pytest.approx(sps.skew(x), rel=1e-8, abs=1e-10)
    assert m.kurtosis == pytest.approx(sps.kurtosis(x, fisher=False), rel=1e-8)


def test_kurtosis_test_equals_scipy_and_separates_gaussian_from_heavy_tails():
    rng = np.random.default_rng(2)
    gaussian = rng.normal(size=20_000)
    heavy = rng.laplace(size=20_000) * rng.exponential(size=20_000)  # a heavy-tailed mixture
    for x in (gaussian, heavy, rng.uniform(size=300)):
        z, p = stats.kurtosis_test(sps.kurtosis(x, fisher=False), x.size)
        ref = sps.kurtosistest(x)
        assert z == pytest.approx(ref.statistic, rel=1e-9) and p == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-300)
    assert stats.kurtosis_test(sps.kurtosis(gaussian, fisher=False), gaussian.size)[1] > 0.01
    assert stats.kurtosis_test(sps.kurtosis(heavy, fisher=False), heavy.size)[1] < 1e-12


def test_weibull_fit_recovers_a_planted_shape():
    rng = np.random.default_rng(3)
    x = sps.weibull_min.rvs(0.6, scale=2e-5, size=20_000, random_state=rng)
    k, scale = stats.weibull_fit(x)
    assert k == pytest.approx(0.6, rel=0.05)
    assert scale == pytest.approx(2e-5, rel=0.1)
    assert math.isnan(stats.weibull_fit(np.zeros(100))[0])  # nothing positive to fit


def test_gaussian_tail_share_matches_a_gaussian_sample():
    x = np.abs(np.random.default_rng(4).normal(size=2_000_000))
    assert stats.gaussian_tail_share(2.0) == pytest.approx(x[x > 2].sum() / x.sum(), rel=0.02)


def test_reservoir_is_uniform_and_reproducible():
    def run():
        r = stats.Reservoir(5_000, seed=7)
        for b in _blocks(np.arange(200_000, dtype=float), 9_999):
            r.update(b)
        return r.values

    a, b = run(), run()
    assert a.size == 5_000 and np.array_equal(a, b) and np.unique(a).size == a.size
    # a uniform sample of 0..199999: mean ~ 100000, both halves represented about equally
    assert abs(a.mean() - 99_999.5) < 3 * 57_735 / math.sqrt(5_000)
    assert abs((a < 100_000).mean() - 0.5) < 0.03


def test_top_moments_are_the_deepest_local_minima():
    x = np.zeros(100)
    planted = {10: -5.0, 30: -4.0, 50: -3.0, 70: -2.0, 90: -1.0}
    for t, v in planted.items():
        x[t] = v
    x[0] = -100.0  # an endpoint is never a moment (no neighbour on one side)
    assert stats.top_moments(x, 3).tolist() == [10, 30, 50]
    assert stats.top_moments(-x, 2, kind="max").tolist() == [10, 30]
    flat = np.ones(10)
    assert stats.top_moments(flat, 3).size == 0


def test_shift_baseline_finds_planted_synchronisation():
    rng = np.random.default_rng(5)
    shared = np.sort(rng.choice(np.arange(3, 997), 20, replace=False))
    synced = [[shared.copy(), shared.copy(), shared.copy()] for _ in range(4)]  # 4 classes x 3 layers
    observed, baseline, p = stats.shift_baseline(synced, max_shift=2, repeats=2000, seed=0)
    assert observed == 80
    # shifted layers only meet by chance: draws that merely translate all layers together are excluded
    assert baseline.max() < 20 and p == pytest.approx(1 / 2001)

    independent = [[np.sort(rng.choice(np.arange(3, 997), 20, replace=False)) for _ in range(3)] for _ in range(4)]
    observed, baseline, p = stats.shift_baseline(independent, max_shift=2, repeats=2000, seed=0)
    assert observed <= 2 and p > 0.05


def test_synchronisation_of_a_fraction_of_the_layers():
    """Fig. S15 counts iterations where half the layers peak together: plant moments in 2 of 4 layers."""
    rng = np.random.default_rng(9)
    shared = np.sort(rng.choice(np.arange(3, 997), 20, replace=False))
    others = [np.sort(rng.choice(np.arange(3, 997), 20, replace=False)) for _ in range(2)]
    layers = [shared, shared.copy(), *others]
    assert stats.count_synchronized(layers) <= 1
    assert stats.count_synchronized(layers, min_fraction=0.5) >= 20
    # with one group, the two planted layers draw the same shift 1 time in 5 and keep their 20;
    # over 10 groups (classes) that chance vanishes
    observed, baseline, p = stats.shift_baseline([layers] * 10, repeats=1000, min_fraction=0.5)
    assert observed >= 200 and baseline.mean() < 100 and p < 0.01
    assert stats.required_layers(22, 0.5) == 11 and stats.required_layers(3, 1.0) == 3


def test_sign_changes_on_a_known_oscillation():
    """The gradient jobs' sign-change counter (lcaflow.reducers.SignChanges), fed one vector at a time."""
    import torch

    from lcaflow.reducers import SignChanges

    t = np.arange(400)
    period = 16
    motion = np.sin(2 * np.pi * (t + 0.5) / period)  # 2 sign changes per period
    constant = np.ones(400)
    with_pauses = np.where(t % 2 == 0, 0.0, np.where(t % 4 == 1, 1.0, -1.0))  # +, 0, -, 0, +: zeros do not count
    data = np.stack([motion, constant, with_pauses], axis=1)
    counter = SignChanges(3, "cpu")
    for b in _blocks(data, 37):
        for row in b:
            counter.update(torch.from_numpy(row))
    assert counter.changes.tolist() == [2 * 400 // period - 1, 0, 199]


def test_mean_pairwise_correlation():
    rng = np.random.default_rng(6)
    base = rng.normal(size=(500, 1))
    together = base + 0.01 * rng.normal(size=(500, 6))
    apart = rng.normal(size=(500, 6))
    assert stats.mean_pairwise_correlation(together) > 0.99
    assert abs(stats.mean_pairwise_correlation(apart)) < 0.05
    assert math.isnan(stats.mean_pairwise_correlation(np.ones((50, 4))))  # constant columns: nothing to correlate


def test_top_class_shares():
    shares = stats.top_class_shares(np.array([[8.0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0], [5, -3, 5, 0]]))
    assert shares[0].tolist() == pytest.approx([0.8, 0.9, 1.0])
    assert shares[1].tolist() == pytest.approx([0.25, 0.5, 0.75])
    assert np.isnan(shares[2]).all()
    assert shares[3].tolist() == pytest.approx([0.5, 1.0, 1.0])  # negative (hurting) amounts are not help


def test_t_tests_on_planted_effects():
    rng = np.random.default_rng(8)
    hurting_layer = 0.5 + 0.05 * rng.normal(size=10)
    t, p = stats.one_sample_t(hurting_layer)
    assert t > 0 and p < 1e-6
    assert math.isnan(stats.one_sample_t(np.array([1.0]))[1])
    t, p = stats.welch_t(1.0 + 0.01 * rng.normal(size=10), 1.2 + 0.01 * rng.normal(size=10))
    assert t < 0 and p < 1e-6
