"""The claims table on runs and experiments whose facts are planted."""

import numpy as np

from lcaflow.claims import NOT_MEASURED, ExperimentFacts, RunFacts, check, write


def fact(name, architecture="resnet20", layers_lca=(0.5, -1.0, -2.0, 0.3), helping=50.8, layers=None, momentum=0.9, optimizer="sgd"):
    names = np.array([f"l{i}" for i in range(len(layers_lca))])
    run = {"dataset": "cifar10", "architecture": architecture, "optimizer": {"name": optimizer, "lr": 0.1, "momentum": momentum}}
    if layers:
        run["layers"] = layers
    return RunFacts(
        name=name,
        run=run,
        noise={"pct_helping_of_nonzero": helping, "distribution": {"weibull": {"all": {"shape_k": 0.4}}, "kurtosis_test_p": 0.0, "kurtosis_per_iteration_mean": 900.0}},
        grounding={"train": {"cumulative_error_pct": 0.05, "first_order_cumulative_error_pct": -900.0}},
        oscillation={"iterations_per_weight_direction_change": 6.7, "iterations_per_gradient_sign_change": 9.5, "gradient_measured": True},
        sync={"signals": {"lca_by_class": {"synchronized_per_group": 9.0, "baseline_mean_per_group": 0.4, "p_value": 1e-4}}},
        layers={"layer": names, "lca": np.array(layers_lca, dtype=float)},
    )


def experiment(name, runs, verdicts=None, p=None, comparison=None, compare_with=None):
    n = len(runs[0].layers["layer"])
    return ExperimentFacts(
        name=name,
        runs=runs,
        summary={},
        layers={"verdict": np.array(verdicts or ["helps"] * n), "p_value": np.array(p or [1e-5] * n)},
        comparison=comparison,
        compare_with=compare_with,
    )


def by_start(claims, text):
    return next(c for c in claims if c.claim.startswith(text))


def test_claims_hold_when_the_planted_facts_match_the_paper(tmp_path):
    normal = [fact(f"n{s}") for s in range(3)]
    frozen = [fact(f"f{s}", layers={"l3": {"freeze": True}}) for s in range(3)]
    delays = []
    for d in (0, 3, 9):  # last-layer LCA linear in the delay
        m = d / (d + 1)
        delays.append(experiment(f"delay{d}", [fact(f"d{d}", layers_lca=(0.5, -1.0, -2.0, 0.05 * d - 0.2), layers={"l3": {"momentum": m}})]))
    comparison = {"metric": np.array(["final_train_loss"]), "mean_a": np.array([0.2]), "mean_b": np.array([0.3]), "p_value": np.array([1e-5])}
    exps = [
        experiment("normal", normal, verdicts=["hurts", "helps", "helps", "hurts"], p=[1e-5, 1e-6, 1e-6, 1e-5]),
        experiment("frozen", frozen, comparison=comparison, compare_with="normal"),
        *delays,
    ]
    claims = check(normal + frozen + [r for e in delays for r in e.runs], exps)
    for text in ("Percent of non-zero", "CIFAR networks", "Simpson", "First order", "ResNet-20 (SGD)", "Freezing the last", "Last-layer LCA", "Moments of learning", "Weights change", "Full-set gradients", "LCA is heavy"):
        assert by_start(claims, text).holds == "yes", text
    # no MNIST-FC or LeNet run: said, not dropped
    fc = by_start(claims, "All MNIST-FC")
    assert fc.holds == NOT_MEASURED and "no MNIST-FC or LeNet run" in fc.notes
    write(claims, tmp_path / "c.md", tmp_path / "c.tsv")
    text = (tmp_path / "c.md").read_text()
    assert text.count("\n| ") == len(claims) + 1 and "not measured: no MNIST-FC or LeNet run" in text


def test_claims_fail_when_the_facts_contradict_the_paper():
    normal = [fact(f"n{s}", helping=61.0) for s in range(3)]
    exps = [experiment("normal", normal, verdicts=["helps", "helps", "helps", "helps"])]
    claims = check(normal, exps)
    assert by_start(claims, "Percent of non-zero").holds == "no"
    assert by_start(claims, "ResNet-20 (SGD)").holds == "no"
    assert by_start(claims, "Freezing the last").holds == NOT_MEASURED
    assert by_start(claims, "Last-layer LCA").holds == NOT_MEASURED


def test_a_run_shorter_than_the_papers_training_is_not_comparable():
    """Table 1 and S2 are about whole training runs: a 60-step run is measured, not judged."""
    short = fact("toy", architecture="mnist_fc", helping=70.0)
    short.run["iterations"] = 60
    helping = by_start(check([short], []), "Percent of non-zero")
    assert helping.measured == "70.00 %"
    assert helping.holds.startswith("not comparable: 60 of 880 iterations")
    full = fact("full", architecture="mnist_fc", helping=55.0)
    full.run["iterations"] = 880
    both = by_start(check([short, full], []), "Percent of non-zero")
    assert both.holds.startswith("yes (not comparable: 60 of 880") and both.holds.endswith("left out)")


def test_a_recorded_run_whose_model_does_not_reproduce_its_losses_is_noted():
    good, bad = fact("good"), fact("bad")
    bad.grounding["recorded_losses"] = {"median_relative_difference": 0.6, "reproduced": False}
    claim = by_start(check([good, bad], []), "Simpson/RK4 total error")
    assert "bad: the evaluated model does not reproduce the recorded training losses" in claim.notes
    assert not any("good" in note for note in by_start(check([good], []), "Simpson/RK4 total error").notes)
