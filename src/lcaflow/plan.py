"""The cost plan of every run before any compute (`snakemake --cores 1 plan`): its files and their sizes, the
memory and time of each of its jobs, and totals against the free space of the results file system.

Every number comes from lcaflow.cost, the model that the jobs' resource requests use too; the times from a
short calibration of each run's real model on this machine, cached so that a second plan reuses it."""

from __future__ import annotations

from pathlib import Path

from .chunkfile import n_chunks
from .cost.disk import free_bytes, human
from .cost.run import RunCost
from .errors import ConfigError
from .io import write_json, write_text
from .paths import ResultPaths
from .progress import log
from .spec import RunSpec, resolve_device


def write_plan(
    runs: dict, lca: dict, threads: int, results: str, md_path, json_path, analysis_jobs: int, figure_jobs: int
) -> dict:
    """Plan every run (validated config entries) and write plan.json and plan.md."""
    planned = {name: plan_run(name, run, lca, threads, results, analysis_jobs, figure_jobs) for name, run in runs.items()}
    plan = {"runs": planned, "totals": totals(planned), "free_bytes": free_bytes(results), "results_dir": str(Path(results).resolve())}
    plan["warnings"] = warnings(plan)
    write_json(json_path, plan)
    write_text(md_path, markdown(plan))
    for line in plan["warnings"]:
        log.warning(line)
    return plan


def plan_run(name: str, run: dict, lca: dict, threads: int, results: str, analysis_jobs: int, figure_jobs: int) -> dict:
    """Files, jobs and totals of one run."""
    spec = RunSpec.of(name, run)
    cost = RunCost(spec, lca, threads, results, resolve_device(run["device"]).type)
    if cost.size is None:
        raise ConfigError(
            f"{spec.where('dataset')}: cannot size the run before {cost.data_path} exists; make it with `snakemake data_all`"
        )
    calibration = cost.calibrate()
    files = cost.files()
    jobs = run_jobs(cost, analysis_jobs, figure_jobs)
    return {
        "parameters": cost.size.num_params,
        "iterations": run["iterations"],
        "gradient_jobs": n_chunks(run["iterations"], lca["iterations_per_job"]),
        "examples": {"train": cost.size.n_train, "val": cost.size.n_val},
        "device": cost.device,
        "files": files,
        "transient": [ResultPaths("").run(name).checkpoint_rows] if not spec.recorded else [],
        "data_file": ResultPaths("").data(spec.data_key),
        "jobs": jobs,
        "totals": run_totals(files, jobs, cost.device, threads, spec),
        "calibration": calibration,
    }


def run_jobs(cost: RunCost, analysis_jobs: int, figure_jobs: int) -> dict:
    """{job kind: {count, seconds_each, seconds_total, mem_mb}} of one run; the memory is what the jobs request."""
    s = cost.seconds
    return {
        first_job(cost.spec): job(1, s["train"], cost.mem_mb("train")),
        "gradients": job(len(s["gradients"]), s["gradients"], cost.mem_mb("gradients")),
        "assemble": job(1, s["assemble"], cost.mem_mb("analysis")),
        "analyses": job(analysis_jobs, s["analysis"], cost.mem_mb("analysis")),
        "figures": job(figure_jobs, s["figure"], cost.mem_mb("figure")),
    }


def first_job(spec: RunSpec) -> str:
    """The rule that makes the run's trajectory: train, or adopt_trajectory for a recorded run."""
    return "adopt_trajectory" if spec.recorded else "train"


def job(count: int, seconds, mem_mb: int) -> dict:
    """A job kind: `seconds` is one job's time, or a list of each job's."""
    each = list(seconds) if isinstance(seconds, list) else [seconds] * count
    return {
        "count": count,
        "seconds_each": round(max(each, default=0.0), 2),
        "seconds_total": round(sum(each), 2),
        "mem_mb": mem_mb,
    }


def run_totals(files: dict, jobs: dict, device: str, threads: int, spec: RunSpec) -> dict:
    """Disk at the end (the transient checkpoint left out, the shared data file too), peak disk while
    training, core-hours and GPU hours, and the serial time."""
    here, data = ResultPaths("").run(spec.name), ResultPaths("").data(spec.data_key)
    kept = sum(n for f, n in files.items() if f not in (data, here.checkpoint_rows))
    on_device = jobs[first_job(spec)]["seconds_total"] + jobs["gradients"]["seconds_total"]
    rest = sum(j["seconds_total"] for kind, j in jobs.items() if kind not in (first_job(spec), "gradients"))
    gpu = device.startswith("cuda")
    return {
        "disk_bytes": kept,
        "disk_bytes_with_data_and_checkpoint": sum(files.values()),
        "cpu_core_hours": round(((0 if gpu else on_device * threads) + rest) / 3600, 4),
        "gpu_hours": round(on_device / 3600 if gpu else 0.0, 4),
        "serial_hours": round((on_device + rest) / 3600, 4),
    }


def totals(runs: dict) -> dict:
    """Over all runs; each data file counted once."""
    data = {r["data_file"]: r["files"][r["data_file"]] for r in runs.values()}
    summed = {
        k: sum(r["totals"][k] for r in runs.values()) for k in ("disk_bytes", "cpu_core_hours", "gpu_hours", "serial_hours")
    }
    return {**summed, "data_bytes": sum(data.values()), "disk_bytes_with_data": summed["disk_bytes"] + sum(data.values())}


def warnings(plan: dict) -> list[str]:
    """One line per run (and for all runs together) whose predicted disk exceeds the free space."""
    free = plan["free_bytes"]
    lines = [
        f"WARNING: run {name} needs {human(r['totals']['disk_bytes_with_data_and_checkpoint'])} on disk, "
        f"more than the {human(free)} free under {plan['results_dir']}; its train job will refuse to start"
        for name, r in plan["runs"].items()
        if r["totals"]["disk_bytes_with_data_and_checkpoint"] > free
    ]
    if not lines and plan["totals"]["disk_bytes_with_data"] > free:
        lines.append(
            f"WARNING: all runs together need {human(plan['totals']['disk_bytes_with_data'])}, more than the "
            f"{human(free)} free under {plan['results_dir']}"
        )
    return lines


# --- plan.md ----------------------------------------------------------------------------------------------


def hours(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def markdown(plan: dict) -> str:
    lines = ["# Cost plan", "", *run_table(plan), "", *totals_lines(plan)]
    for name, r in plan["runs"].items():
        lines += [
            "",
            f"## {name}",
            "",
            *calibration_line(r["calibration"]),
            "",
            *jobs_table(r["jobs"]),
            "",
            *files_table(r["files"], r["transient"]),
        ]
    return "\n".join(lines) + "\n"


def run_table(plan: dict) -> list[str]:
    rows = [
        "| run | parameters K | iterations T | gradient jobs | examples train / val | device | disk | CPU core-h | GPU h | serial time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in plan["runs"].items():
        t = r["totals"]
        rows.append(
            f"| {name} | {r['parameters']:,} | {r['iterations']:,} | {r['gradient_jobs']} | {r['examples']['train']:,} / "
            f"{r['examples']['val']:,} | {r['device']} | {human(t['disk_bytes'])} | {t['cpu_core_hours']:.2f} | "
            f"{t['gpu_hours']:.2f} | {hours(t['serial_hours'] * 3600)} |"
        )
    return rows


def totals_lines(plan: dict) -> list[str]:
    t = plan["totals"]
    return [
        f"All runs: {human(t['disk_bytes'])} of run files plus {human(t['data_bytes'])} of data; "
        f"{t['cpu_core_hours']:.2f} CPU core-hours, {t['gpu_hours']:.2f} GPU hours, {hours(t['serial_hours'] * 3600)} one job at a time.",
        f"Free under {plan['results_dir']}: {human(plan['free_bytes'])}.",
        *([""] + plan["warnings"] if plan["warnings"] else []),
    ]


def calibration_line(c: dict) -> list[str]:
    where = "reused from" if c["cached"] else "measured now, cached in"
    train = (
        "no training step (a recorded run is adopted, not trained)"
        if c["train_s_per_example"] is None
        else f"{c['train_s_per_example'] * 1e6:.1f} us per training example (batch {c['batches']['train']})"
    )
    return [
        f"Calibration ({where} `{c['file']}`): {c['architecture']} on {c['accelerator'] or c['cpu']} ({c['threads']} threads, "
        f"torch {c['torch']}): {train}, {c['eval_s_per_example'] * 1e6:.1f} us per evaluated example (batch {c['batches']['eval']}), "
        "as the gradient jobs evaluate.",
        *busy_note(c),
    ]


def busy_note(c: dict) -> list[str]:
    """A calibration made while other work kept the processors busy overestimates every time."""
    if c["device"] != "cpu" or not c["busy"]:
        return []
    return [
        f"The processors were busy while it was measured (other work used {c['other_work_cores']} of {c['cpu_count']} cores): the times "
        "below may be too long; delete the calibration file and plan again on a quieter machine."
    ]


def jobs_table(jobs: dict) -> list[str]:
    rows = ["| job | count | time each (longest) | time, all | memory requested |", "|---|---|---|---|---|"]
    for kind, j in jobs.items():
        rows.append(f"| {kind} | {j['count']} | {hours(j['seconds_each'])} | {hours(j['seconds_total'])} | {j['mem_mb']:,} MB |")
    return rows


def files_table(files: dict, transient: list[str]) -> list[str]:
    """Paths under results_dir; the training checkpoint's rows are marked transient (removed once the
    trajectory is written), the small outputs are one estimate for their folders."""
    rows = ["| file | size |", "|---|---|"]
    for f, n in files.items():
        note = " (transient)" if f in transient else " (estimate)" if f.endswith("/") else ""
        rows.append(f"| `{f}`{note} | {human(n)} |")
    return rows
