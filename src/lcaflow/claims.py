"""The paper's quantitative claims checked against the runs and experiments that were made.

Every claim gets a row: what the paper says, what was measured (and on which data and networks), the
criterion, and whether it holds. A claim that the runs made cannot test says so and why."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .tables import read_tsv

NOT_MEASURED = "not measured"


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


def _each_run(c: Claim, runs, get, criterion, spec=".3g", unit="", missing="no run") -> Claim:
    """A claim about every run of a kind: the range of `get` over the runs, holding if all meet `criterion`."""
    if not runs:
        c.notes.append(missing)
        return c
    values = [get(r) for r in runs]
    c.measured, c.where = _fmt(values, spec) + unit, _where(runs)
    c.holds = _verdict(all(v is not None and criterion(v) for v in values))
    return c


def check(runs: list[RunFacts], experiments: list[ExperimentFacts]) -> list[Claim]:
    out = []
    plain = [r for r in runs if r.plain]

    def helping(r):
        return r.noise["pct_helping_of_nonzero"]

    c = Claim("Percent of non-zero parameters helping lies between 50% and 58% (Table 1)", "50.19 to 57.79%", "every plain run in [50, 58]")
    out.append(_each_run(c, plain, helping, lambda v: 50 <= v <= 58, ".2f", " %", "no run without per-layer changes"))

    cifar = [r for r in plain if r.run["architecture"] in ("resnet20", "allcnn")]
    c = Claim("CIFAR networks (ResNet-20, AllCNN): barely over 50% helping (Table 1)", "50.19 to 51.09%", "every such run in [50, 52]")
    out.append(_each_run(c, cifar, helping, lambda v: 50 <= v <= 52, ".2f", " %", "no ResNet-20 or AllCNN run"))

    c = Claim("Simpson/RK4 total error under 1% of the total loss change (Table S1)", "0.001% to 0.27%", "every run: abs(error) < 1%")
    out.append(_each_run(c, runs, lambda r: r.grounding["train"]["cumulative_error_pct"], lambda v: abs(v) < 1, unit=" %"))
    adaptive = [r for r in runs if r.grounding.get("quadrature", "simpson") != "simpson"]
    if adaptive:  # its trapezoid iterations carry no error (it was removed): the total is its Simpson iterations'
        c.measured += f"; {len(adaptive)} of {len(runs)} runs by adaptive quadrature, trapezoid errors removed"
    c = Claim("First order is off by tens to thousands of percent (Table S1)", "-75% to -4250%", "every run: abs(error) >= 10%")
    out.append(_each_run(c, runs, lambda r: r.grounding["train"]["first_order_cumulative_error_pct"], lambda v: abs(v) >= 10, ".4g", " %"))

    small = [r for r in plain if r.run["architecture"] in ("mnist_fc", "lenet")]
    c = Claim("All MNIST-FC and LeNet layers help (negative total LCA; Fig. S11)", "all layers < 0", "every layer of every such run < 0")
    if small:
        worst = [float(np.max(r.layers["lca"])) for r in small]
        c.measured = f"largest layer total {_fmt(worst, '.3g')} nats"
        c.where, c.holds = _where(small), _verdict(all(w < 0 for w in worst))
    else:
        c.notes.append("no MNIST-FC or LeNet run")
    out.append(c)

    c = Claim(
        "ResNet-20 (SGD): first and last layers hurt, all others help, p < 1e-4 over 10 seeds (section 4)",
        "first, last > 0 (p < 1e-4)",
        "an experiment of plain ResNet-20 SGD runs: first and last layer verdict 'hurts' with p < 1e-4",
    )
    res = [e for e in experiments if e.runs and all(r.plain and not r.run.get("trajectory") and r.run["architecture"] == "resnet20" and r.run["optimizer"]["name"] == "sgd" for r in e.runs)]
    if res:
        e = max(res, key=lambda e: len(e.runs))
        verdicts, p = list(e.layers["verdict"]), e.layers["p_value"]
        others = verdicts[1:-1]
        c.measured = (
            f"{e.name} (n = {len(e.runs)}): first {verdicts[0]} (p {p[0]:.2g}), last {verdicts[-1]} (p {p[-1]:.2g}); "
            f"{others.count('helps')} of {len(others)} others help"
        )
        c.where = _where(e.runs)
        c.holds = _verdict(verdicts[0] == verdicts[-1] == "hurts" and p[0] < 1e-4 and p[-1] < 1e-4)
    else:
        c.notes.append("no experiment of ResNet-20 SGD seeds (configs/paper/fig4.yaml)")
    out.append(c)

    c = Claim("Freezing the last layer lowers the final training loss (p < 0.001; Fig. 4)", "lower, p < 0.001", "frozen experiment's mean final train loss below the normal one's, Welch p < 0.001")
    pairs = [e for e in experiments if e.comparison and e.runs and _last_frozen(e.runs[0])]
    if pairs:
        e = pairs[0]
        rows = dict(zip(e.comparison["metric"], range(len(e.comparison["metric"]))))
        i = rows["final_train_loss"]
        a, b, p = e.comparison["mean_a"][i], e.comparison["mean_b"][i], e.comparison["p_value"][i]
        c.measured = f"{e.name} {a:.4f} vs {e.compare_with} {b:.4f} nats, p {p:.2g} (n = {len(e.runs)})"
        c.where, c.holds = _where(e.runs), _verdict(a < b and p < 1e-3)
    else:
        c.notes.append("no experiment with the last layer frozen compared with a normal one")
    out.append(c)

    c = Claim("Last-layer LCA is roughly linear in its momentum delay d = m / (1 - m) (Fig. 5)", "near-linear in d = 0..9", "linear fit of mean last-layer LCA on d over >= 3 delays: R^2 >= 0.8")
    delays = {}
    for e in experiments:
        d = _last_delay(e.runs[0]) if e.runs else None
        if d is not None and all(_last_delay(r) == d for r in e.runs):
            delays[d] = float(np.mean([r.layers["lca"][-1] for r in e.runs]))
    if len(delays) >= 3:
        x, y = np.array(sorted(delays)), np.array([delays[k] for k in sorted(delays)])
        slope, intercept = np.polyfit(x, y, 1)
        r2 = 1 - ((y - (slope * x + intercept)) ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-300)
        c.measured = f"slope {slope:.3g} nats per step of delay, R^2 = {r2:.2f} over {len(x)} delays"
        c.holds = _verdict(r2 >= 0.8)
    else:
        c.notes.append("fewer than 3 experiments with a fixed last-layer momentum (configs/paper/fig5.yaml)")
    out.append(c)

    c = Claim("Moments of learning are synchronised across layers far above a shifted baseline, p < 0.001 (Fig. 6)", "9.4 vs 0.4 per class, p < 0.001", "every run: per class, observed >= 3 x baseline and p < 0.001")
    classed = [r for r in runs if "lca_by_class" in r.sync["signals"]]  # runs whose loss has classes
    if classed:
        obs = [r.sync["signals"]["lca_by_class"]["synchronized_per_group"] for r in classed]
        base = [r.sync["signals"]["lca_by_class"]["baseline_mean_per_group"] for r in classed]
        ps = [r.sync["signals"]["lca_by_class"]["p_value"] for r in classed]
        c.measured = f"{_fmt(obs, '.1f')} vs {_fmt(base, '.2f')} per class, p {_fmt(ps, '.2g')}"
        c.where = _where(classed)
        c.holds = _verdict(all(o >= 3 * b and p < 1e-3 for o, b, p in zip(obs, base, ps)))
    elif runs:
        c.notes.append("no run whose loss has classes")
    out.append(c)

    moving = [r for r in plain if not r.run.get("trajectory") and (r.run["optimizer"]["name"] == "adam" or r.run["optimizer"].get("momentum"))]
    c = Claim("Weights change direction every ~7-14 iterations (Table S2; with momentum or Adam)", "6.74 to 16.86", "every such run in [5, 20]")
    turns = "iterations_per_weight_direction_change"
    unknown = " (a recorded run's optimizer is not known)" if any(r.run.get("trajectory") for r in plain) else ""
    out.append(_each_run(c, moving, lambda r: r.oscillation[turns], lambda v: 5 <= v <= 20, missing="no run with momentum or Adam" + unknown))

    c = Claim("Full-set gradients change sign every ~9-12 iterations (Table S2; with momentum or Adam)", "9.37 to 15.37", "every such run in [7, 18]")
    with_grad = [r for r in moving if r.oscillation.get("gradient_measured", r.oscillation.get("gradient_stored"))]
    missing = "needs results from a version that counts gradient sign changes: rerun the gradient jobs" if moving else "no run with momentum or Adam" + unknown
    out.append(_each_run(c, with_grad, lambda r: r.oscillation["iterations_per_gradient_sign_change"], lambda v: 7 <= v <= 18, missing=missing))

    c = Claim("LCA is heavy-tailed: kurtosis far above a Gaussian's, Weibull shape k < 1 (Fig. S10)", "excess kurtosis 10420, p ~ 0; k < 1", "every run: kurtosis test p < 1e-6 and k < 1")
    if runs:
        ks = [r.noise["distribution"]["weibull"]["all"]["shape_k"] for r in runs]
        ps = [r.noise["distribution"]["kurtosis_test_p"] for r in runs]
        kurt = [r.noise["distribution"].get("kurtosis_per_iteration_mean") for r in runs]
        c.measured = f"kurtosis within an iteration {_fmt(kurt)}; Weibull k {_fmt(ks, '.2f')}; test p {_fmt(ps, '.2g')}"
        c.where = _where(runs)
        c.holds = _verdict(all(k is not None and k < 1 for k in ks) and all(p is not None and p < 1e-6 for p in ps))
    out.append(c)

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
    for path, text in ((out_md, "\n".join(lines) + "\n"), (out_tsv, "\n".join(tsv) + "\n")):
        tmp = Path(f"{path}.partial")
        tmp.write_text(text)
        tmp.replace(path)


def load_run(name: str, run: dict, stats_dir) -> RunFacts:
    d = Path(stats_dir)
    return RunFacts(
        name=name,
        run=run,
        noise=json.loads((d / "noise.json").read_text()),
        grounding=json.loads((d.parent / "grounding.json").read_text()),  # the assemble stage's
        oscillation=json.loads((d / "oscillation.json").read_text()),
        sync=json.loads((d / "synchronization.json").read_text()),
        layers=read_tsv(d / "layers.tsv"),
    )



def claims_stage(runs: dict, experiments: dict, results_dir, out_md, out_tsv) -> list[Claim]:
    """Read every run's and experiment's tables under results_dir and write the claims table."""
    base = Path(results_dir)
    facts = {name: load_run(name, run, base / "runs" / name / "stats") for name, run in runs.items()}
    exps = []
    for name, exp in experiments.items():
        d = base / "experiments" / name
        exps.append(
            ExperimentFacts(
                name=name,
                runs=[facts[r] for r in exp["runs"]],
                summary=json.loads((d / "summary.json").read_text()),
                layers=read_tsv(d / "layers.tsv"),
                comparison=read_tsv(d / "comparison.tsv") if exp.get("compare_with") else None,
                compare_with=exp.get("compare_with"),
            )
        )
    result = check(list(facts.values()), exps)
    write(result, out_md, out_tsv)
    return result
