"""The paper's quantitative claims checked against the runs and experiments that were made.

Every claim gets a row: what the paper says, what was measured (and on which data and networks), the
criterion, and whether it holds. A claim that the runs made cannot test says so and why."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .io import write_text
from .tables import read_tsv

NOT_MEASURED = "not measured"
# The paper's training lengths (Table S8); a claim about whole training runs compares runs at least this long
# (a network the paper did not train: its shortest, MNIST-FC's 880 iterations).
FULL_TRAINING_ITERATIONS = {"mnist_fc": 880, "lenet": 880, "resnet20": 5000, "allcnn": 5000}


@dataclass
class RunFacts:
    name: str
    run: dict  # the run's config
    noise: dict
    grounding: dict
    oscillation: dict
    sync: dict
    layers: dict  # columns of layers.tsv

    @property
    def plain(self) -> bool:
        """Trained as the paper's default setting: no per-layer changes."""
        return not self.run.get("layers")

    @property
    def full_length(self) -> int:
        """The iterations of a full training run of this network in the paper."""
        return FULL_TRAINING_ITERATIONS.get(self.run["architecture"], FULL_TRAINING_ITERATIONS["mnist_fc"])

    @property
    def short(self) -> bool:
        """Shorter than the paper's training of its network: its whole-run statistics are not comparable."""
        return self.run.get("iterations", self.full_length) < self.full_length

    @property
    def label(self) -> str:
        data, network = (ref.rpartition(":")[2] for ref in (self.run["dataset"], self.run["architecture"]))
        if self.run.get("trajectory"):  # recorded by the user's own loop: its optimizer is not known here
            return f"{data}/{network}/own loop"
        opt = self.run["optimizer"]
        extra = "" if opt["name"] != "sgd" or opt.get("momentum") else " mom=0"
        return f"{data}/{network}/{opt['name']}{extra}"


@dataclass
class ExperimentFacts:
    name: str
    runs: list[RunFacts]
    summary: dict
    layers: dict  # columns of the experiment's layers.tsv
    comparison: dict | None = None  # columns of comparison.tsv
    compare_with: str | None = None


@dataclass
class Claim:
    claim: str
    paper: str
    criterion: str
    measured: str = ""
    where: str = ""
    holds: str = NOT_MEASURED
    notes: list[str] = field(default_factory=list)


def _verdict(ok: bool) -> str:
    return "yes" if ok else "no"


def _where(runs) -> str:
    return ", ".join(sorted({r.label for r in runs})) or "-"


def _fmt(values, spec=".3g") -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return f"{lo:{spec}}" if lo == hi else f"{lo:{spec}} to {hi:{spec}} ({len(values)} runs)"


def _each_run(c: Claim, runs, get, criterion, spec=".3g", unit="", missing="no run", whole_training=False) -> Claim:
    """A claim about every run of a kind: the range of `get` over the runs, holding if all meet `criterion`.
    A claim about `whole_training` runs judges only runs as long as the paper's; shorter ones are measured
    and said to be not comparable."""
    if not runs:
        c.notes.append(missing)
        return c
    values = [get(r) for r in runs]
    c.measured, c.where = _fmt(values, spec) + unit, _where(runs)
    judged = [v for r, v in zip(runs, values) if not (whole_training and r.short)]
    c.holds = _verdict(all(v is not None and criterion(v) for v in judged)) if judged else _not_comparable(runs)
    if judged and len(judged) < len(runs):
        c.holds += f" ({_not_comparable([r for r in runs if r.short])}, left out)"
    return c


def _not_comparable(short) -> str:
    """Why runs shorter than the paper's training are not judged, e.g. 'not comparable: 60 of 880 iterations'."""
    lengths = sorted({(r.run["iterations"], r.full_length) for r in short})
    said = ", ".join(f"{t:,} of {full:,}" for t, full in lengths)
    return f"not comparable: {said} iterations (the paper's claim is about whole training runs)"


def _plain(runs):
    return [r for r in runs if r.plain]


def _helping(r: RunFacts):
    return r.noise["pct_helping_of_nonzero"]


def helping_share(runs, experiments) -> Claim:
    c = Claim("Percent of non-zero parameters helping lies between 50% and 58% (Table 1)", "50.19 to 57.79%", "every plain run in [50, 58]")
    return _each_run(c, _plain(runs), _helping, lambda v: 50 <= v <= 58, ".2f", " %", "no run without per-layer changes", True)


def cifar_helping_share(runs, experiments) -> Claim:
    cifar = [r for r in _plain(runs) if r.run["architecture"] in ("resnet20", "allcnn")]
    c = Claim("CIFAR networks (ResNet-20, AllCNN): barely over 50% helping (Table 1)", "50.19 to 51.09%", "every such run in [50, 52]")
    return _each_run(c, cifar, _helping, lambda v: 50 <= v <= 52, ".2f", " %", "no ResNet-20 or AllCNN run", True)


def simpson_error(runs, experiments) -> Claim:
    c = Claim("Simpson/RK4 total error under 1% of the total loss change (Table S1)", "0.001% to 0.27%", "every run: abs(error) < 1%")
    c = _each_run(c, runs, lambda r: r.grounding["train"]["cumulative_error_pct"], lambda v: abs(v) < 1, unit=" %")
    adaptive = [r for r in runs if r.grounding.get("quadrature", "simpson") != "simpson"]
    if adaptive:  # its trapezoid iterations carry no error (it was removed): the total is its Simpson iterations'
        c.measured += f"; {len(adaptive)} of {len(runs)} runs by adaptive quadrature, trapezoid errors removed"
    unlike = [r.name for r in runs if (r.grounding.get("recorded_losses") or {}).get("reproduced") is False]
    if unlike:  # grounded, but for a model that does not give the recording's own training losses
        c.notes.append(f"{', '.join(unlike)}: the evaluated model does not reproduce the recorded training losses")
    return c


def first_order_error(runs, experiments) -> Claim:
    c = Claim("First order is off by tens to thousands of percent (Table S1)", "-75% to -4250%", "every run: abs(error) >= 10%")
    return _each_run(c, runs, lambda r: r.grounding["train"]["first_order_cumulative_error_pct"], lambda v: abs(v) >= 10, ".4g", " %")


def small_networks_layers_help(runs, experiments) -> Claim:
    small = [r for r in _plain(runs) if r.run["architecture"] in ("mnist_fc", "lenet")]
    c = Claim("All MNIST-FC and LeNet layers help (negative total LCA; Fig. S11)", "all layers < 0", "every layer of every such run < 0")
    if not small:
        c.notes.append("no MNIST-FC or LeNet run")
        return c
    worst = [float(np.max(r.layers["lca"])) for r in small]
    c.measured = f"largest layer total {_fmt(worst, '.3g')} nats"
    c.where, c.holds = _where(small), _verdict(all(w < 0 for w in worst))
    return c


def resnet_first_last_hurt(runs, experiments) -> Claim:
    c = Claim(
        "ResNet-20 (SGD): first and last layers hurt, all others help, p < 1e-4 over 10 seeds (section 4)",
        "first, last > 0 (p < 1e-4)",
        "an experiment of plain ResNet-20 SGD runs: first and last layer verdict 'hurts' with p < 1e-4",
    )
    res = [
        e
        for e in experiments
        if e.runs
        and all(r.plain and not r.run.get("trajectory") and r.run["architecture"] == "resnet20" and r.run["optimizer"]["name"] == "sgd" for r in e.runs)
    ]
    if not res:
        c.notes.append("no experiment of ResNet-20 SGD seeds (configs/paper/fig4.yaml)")
        return c
    e = max(res, key=lambda e: len(e.runs))
    verdicts, p = list(e.layers["verdict"]), e.layers["p_value"]
    others = verdicts[1:-1]
    c.measured = (
        f"{e.name} (n = {len(e.runs)}): first {verdicts[0]} (p {p[0]:.2g}), last {verdicts[-1]} (p {p[-1]:.2g}); "
        f"{others.count('helps')} of {len(others)} others help"
    )
    c.where = _where(e.runs)
    c.holds = _verdict(verdicts[0] == verdicts[-1] == "hurts" and p[0] < 1e-4 and p[-1] < 1e-4)
    return c


def frozen_last_layer(runs, experiments) -> Claim:
    c = Claim(
        "Freezing the last layer lowers the final training loss (p < 0.001; Fig. 4)",
        "lower, p < 0.001",
        "frozen experiment's mean final train loss below the normal one's, Welch p < 0.001",
    )
    pairs = [e for e in experiments if e.comparison and e.runs and _last_frozen(e.runs[0])]
    if not pairs:
        c.notes.append("no experiment with the last layer frozen compared with a normal one")
        return c
    e = pairs[0]
    i = list(e.comparison["metric"]).index("final_train_loss")
    a, b, p = e.comparison["mean_a"][i], e.comparison["mean_b"][i], e.comparison["p_value"][i]
    c.measured = f"{e.name} {a:.4f} vs {e.compare_with} {b:.4f} nats, p {p:.2g} (n = {len(e.runs)})"
    c.where, c.holds = _where(e.runs), _verdict(a < b and p < 1e-3)
    return c


def momentum_delay(runs, experiments) -> Claim:
    c = Claim(
        "Last-layer LCA is roughly linear in its momentum delay d = m / (1 - m) (Fig. 5)",
        "near-linear in d = 0..9",
        "linear fit of mean last-layer LCA on d over >= 3 delays: R^2 >= 0.8",
    )
    delays = {}
    for e in experiments:
        d = _last_delay(e.runs[0]) if e.runs else None
        if d is not None and all(_last_delay(r) == d for r in e.runs):
            delays[d] = float(np.mean([r.layers["lca"][-1] for r in e.runs]))
    if len(delays) < 3:
        c.notes.append("fewer than 3 experiments with a fixed last-layer momentum (configs/paper/fig5.yaml)")
        return c
    x, y = np.array(sorted(delays)), np.array([delays[k] for k in sorted(delays)])
    slope, intercept = np.polyfit(x, y, 1)
    r2 = 1 - ((y - (slope * x + intercept)) ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-300)
    c.measured = f"slope {slope:.3g} nats per step of delay, R^2 = {r2:.2f} over {len(x)} delays"
    c.holds = _verdict(r2 >= 0.8)
    return c


def synchronised_moments(runs, experiments) -> Claim:
    c = Claim(
        "Moments of learning are synchronised across layers far above a shifted baseline, p < 0.001 (Fig. 6)",
        "9.4 vs 0.4 per class, p < 0.001",
        "every run: per class, observed >= 3 x baseline and p < 0.001",
    )
    # runs whose loss has classes and whose examples are grouped by them (runs.<run>.example_groups: a run
    # grouped otherwise has per-group, not per-class, signals)
    classed = [r for r in runs if "lca_by_class" in r.sync["signals"] and r.run.get("example_groups") in (None, "classes")]
    if not classed:
        if runs:
            c.notes.append("no run whose loss has classes")
        return c
    signals = [r.sync["signals"]["lca_by_class"] for r in classed]
    obs, base, ps = ([s[k] for s in signals] for k in ("synchronized_per_group", "baseline_mean_per_group", "p_value"))
    c.measured = f"{_fmt(obs, '.1f')} vs {_fmt(base, '.2f')} per class, p {_fmt(ps, '.2g')}"
    c.where = _where(classed)
    c.holds = _verdict(all(o >= 3 * b and p < 1e-3 for o, b, p in zip(obs, base, ps)))
    return c


def _moving(runs):
    """Plain runs the workflow trained with momentum or Adam (a recorded run's optimizer is not known)."""
    return [r for r in _plain(runs) if not r.run.get("trajectory") and (r.run["optimizer"]["name"] == "adam" or r.run["optimizer"].get("momentum"))]


def _unknown_optimizer(runs) -> str:
    return " (a recorded run's optimizer is not known)" if any(r.run.get("trajectory") for r in _plain(runs)) else ""


def weight_turns(runs, experiments) -> Claim:
    c = Claim("Weights change direction every ~7-14 iterations (Table S2; with momentum or Adam)", "6.74 to 16.86", "every such run in [5, 20]")
    get = lambda r: r.oscillation["iterations_per_weight_direction_change"]
    missing = "no run with momentum or Adam" + _unknown_optimizer(runs)
    return _each_run(c, _moving(runs), get, lambda v: 5 <= v <= 20, missing=missing, whole_training=True)


def gradient_sign_changes(runs, experiments) -> Claim:
    c = Claim("Full-set gradients change sign every ~9-12 iterations (Table S2; with momentum or Adam)", "9.37 to 15.37", "every such run in [7, 18]")
    get = lambda r: r.oscillation["iterations_per_gradient_sign_change"]
    missing = "no run with momentum or Adam" + _unknown_optimizer(runs)
    return _each_run(c, _moving(runs), get, lambda v: 7 <= v <= 18, missing=missing, whole_training=True)


def heavy_tails(runs, experiments) -> Claim:
    c = Claim(
        "LCA is heavy-tailed: kurtosis far above a Gaussian's, Weibull shape k < 1 (Fig. S10)",
        "excess kurtosis 10420, p ~ 0; k < 1",
        "every run: kurtosis test p < 1e-6 and k < 1",
    )
    if not runs:
        return c
    ks = [r.noise["distribution"]["weibull"]["all"]["shape_k"] for r in runs]
    ps = [r.noise["distribution"]["kurtosis_test_p"] for r in runs]
    kurt = [r.noise["distribution"]["kurtosis_per_iteration_mean"] for r in runs]
    c.measured = f"kurtosis within an iteration {_fmt(kurt)}; Weibull k {_fmt(ks, '.2f')}; test p {_fmt(ps, '.2g')}"
    c.where = _where(runs)
    c.holds = _verdict(all(k is not None and k < 1 for k in ks) and all(p is not None and p < 1e-6 for p in ps))
    return c


# Every claim the table checks, in its order: one function of (runs, experiments) each.
CLAIMS = (
    helping_share,
    cifar_helping_share,
    simpson_error,
    first_order_error,
    small_networks_layers_help,
    resnet_first_last_hurt,
    frozen_last_layer,
    momentum_delay,
    synchronised_moments,
    weight_turns,
    gradient_sign_changes,
    heavy_tails,
)


def check(runs: list[RunFacts], experiments: list[ExperimentFacts]) -> list[Claim]:
    out = [claim(runs, experiments) for claim in CLAIMS]
    for claim in out:
        if claim.holds == NOT_MEASURED and not claim.notes:
            claim.notes.append("no run")
    return out


def _last_frozen(r: RunFacts) -> bool:
    last = r.layers["layer"][-1]
    return bool((r.run.get("layers") or {}).get(last, {}).get("freeze"))


def _last_delay(r: RunFacts) -> float | None:
    if r.run["optimizer"]["name"] != "sgd":
        return None
    last = r.layers["layer"][-1]
    m = (r.run.get("layers") or {}).get(last, {}).get("momentum")
    return None if m is None else round(m / (1 - m), 6)


def write(claims: list[Claim], out_md, out_tsv) -> None:
    header = ("claim", "paper", "measured", "data / network / optimizer", "criterion", "holds")
    lines = [
        "# The paper's claims against these runs",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    tsv = ["\t".join(header)]
    for c in claims:
        holds = c.holds if c.holds != NOT_MEASURED else f"{NOT_MEASURED}: {'; '.join(c.notes)}"
        cells = (c.claim, c.paper, c.measured or "-", c.where or "-", c.criterion, holds)
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
        tsv.append("\t".join(cells))
    write_text(out_md, "\n".join(lines) + "\n")
    write_text(out_tsv, "\n".join(tsv) + "\n")


RUN_TABLES = ("noise", "grounding", "oscillation", "synchronization", "layers")  # what the claims read of each run
EXPERIMENT_TABLES = ("experiment_summary", "experiment_layers")  # ... of each experiment, and its comparison


def _read(path):
    return read_tsv(path) if str(path).endswith(".tsv") else json.loads(Path(path).read_text())


def claims_stage(runs: dict, experiments: dict, files: dict, out_md, out_tsv) -> list[Claim]:
    """The claims table from every run's and experiment's tables: `files` holds, for each of RUN_TABLES, one
    path per run (in the order of `runs`), for each of EXPERIMENT_TABLES one per experiment, and
    `comparison` one per experiment that is compared with another."""
    facts = {
        name: RunFacts(name, run, **{"sync" if t == "synchronization" else t: _read(files[t][i]) for t in RUN_TABLES})
        for i, (name, run) in enumerate(runs.items())
    }
    comparisons = iter(files.get("comparison", []))
    exps = [
        ExperimentFacts(
            name=name,
            runs=[facts[r] for r in exp["runs"]],
            summary=_read(files["experiment_summary"][i]),
            layers=_read(files["experiment_layers"][i]),
            comparison=_read(next(comparisons)) if exp["compare_with"] else None,
            compare_with=exp["compare_with"],
        )
        for i, (name, exp) in enumerate(experiments.items())
    ]
    result = check(list(facts.values()), exps)
    write(result, out_md, out_tsv)
    return result
