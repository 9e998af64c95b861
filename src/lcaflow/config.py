"""Config validation: the schema (config.schema.json) with one-line errors, default filling, experiments
expanded into runs, and the checks that need more than the schema (a model given by path is imported, a
recorded trajectory read). What each setting changes is in lcaflow.settings."""

from __future__ import annotations

import copy
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from .catalog import OFFICIAL_TRAIN_SIZE, is_builtin_dataset, is_import_path
from .errors import ConfigError, LCAError, did_you_mean
from .settings import TRAINING_ONLY
from .spec import RunSpec

SCHEMA: dict = json.loads(resources.files(__package__).joinpath("config.schema.json").read_text())

# Keys that only make sense for one optimizer; a stray one is a typo-class mistake worth stopping on.
_OPTIMIZER_ONLY = {"momentum": "sgd", "nesterov": "sgd", "betas": "adam", "eps": "adam"}
# The paper's learning rates (S7 table), by (architecture, optimizer, SGD without momentum).
PAPER_LR = {
    ("mnist_fc", "sgd", False): 0.05,
    ("mnist_fc", "sgd", True): 0.5,
    ("mnist_fc", "adam", False): 0.002,
    ("lenet", "sgd", False): 0.02,
    ("lenet", "adam", False): 0.002,
    ("resnet20", "sgd", False): 0.1,
    ("resnet20", "adam", False): 0.005,
    ("allcnn", "sgd", False): 0.1,
    ("allcnn", "adam", False): 0.001,
}
__all__ = ["misread_target", "validate_config"]


def _resolve(schema: dict) -> dict:
    ref = schema.get("$ref")
    if ref:
        node: Any = SCHEMA
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        return node
    return schema


def _fill_defaults(instance: Any, schema: dict) -> None:
    """Insert schema defaults for missing keys, recursively (jsonschema validates but never fills)."""
    schema = _resolve(schema)
    if not isinstance(instance, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        sub = _resolve(sub)
        fill = key not in schema.get("required", []) and key not in _OPTIMIZER_ONLY  # those depend on the optimizer
        if key not in instance and "default" in sub and fill:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(instance[key], sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                _fill_defaults(value, extra)


def _from_cli_string(value: str, types: list[str]):
    """Snakemake parses nested --config values with YAML's BaseLoader: every scalar arrives as a string."""
    lowered = value.strip().lower()
    if "null" in types and lowered in ("null", "none", "~", ""):
        return None
    if "boolean" in types and lowered in ("true", "false"):
        return lowered == "true"
    if "integer" in types:
        try:
            return int(value)
        except ValueError:
            pass
    if "number" in types:
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _coerce_strings(instance: Any, schema: dict) -> Any:
    schema = _resolve(schema)
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    if isinstance(instance, str) and "string" not in types:
        return _from_cli_string(instance, types)
    if isinstance(instance, str) and {"number", "integer", "boolean"} & set(types):  # e.g. lr: a number or "paper"
        converted = _from_cli_string(instance, [t for t in types if t != "string"])
        return converted if not isinstance(converted, str) else instance
    if isinstance(instance, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for key, value in instance.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                instance[key] = _coerce_strings(value, sub)
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        return [_coerce_strings(v, schema["items"]) for v in instance]
    return instance


def _key_path(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _key_path(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    hint = schema.get("description", "")
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        key = f"{where}.{extra[0]}" if error.absolute_path else extra[0]
        return f"unknown key '{key}'{did_you_mean(extra[0], allowed)}; allowed keys here: {', '.join(allowed)}"
    if error.validator == "required":
        return f"{where}: {error.message}; add it"
    if error.validator == "minProperties":
        return f"{where}: must declare at least one entry ({hint})"
    if "propertyNames" in error.schema_path:
        return f"{where}: name {error.instance!r} must match [A-Za-z0-9][A-Za-z0-9_.-]*"
    value = json.dumps(error.instance)
    if error.validator == "pattern":
        return f"{where}: {value} is not valid ({hint})"
    if error.validator == "type":
        return f"{where}: {value} has the wrong type, expected {error.validator_value} ({hint})"
    if error.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[error.validator]
        return f"{where}: {value} is out of range, must be {op} {error.validator_value} ({hint})"
    if error.validator == "enum":
        choices = ", ".join(json.dumps(c) for c in error.validator_value)
        return f"{where}: {value} is not one of {choices}{did_you_mean(error.instance, error.validator_value)} ({hint})"
    return f"{where}: {error.message} ({hint})"


def validate_config(config: dict) -> dict:
    """Return a validated deep copy of `config` with defaults filled; raise ConfigError with one line."""
    if not isinstance(config, dict):
        raise ConfigError("config: the top level must be a mapping with a 'runs' key")
    cfg = _coerce_strings(copy.deepcopy(config), SCHEMA)
    _string_names(cfg)
    _recorded_runs(cfg)
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise ConfigError(f"config: {_describe(errors[0])}")
    _fill_defaults(cfg, SCHEMA)
    _expand_experiments(cfg)
    if not cfg["runs"]:
        raise ConfigError("config: runs: must declare at least one entry (a run, or an experiment with base and seeds)")
    for name, run in cfg["runs"].items():
        _check_run(name, run)
    _check_analysis(cfg)
    lca = cfg["lca"]
    for name, run in cfg["runs"].items():
        _check_curves(name, run, lca["example_curves"])
    if lca["trapezoid_tolerance"] is None:  # with a midpoint sample, what it leaves must be within tolerance
        lca["trapezoid_tolerance"] = 2 * lca["tolerance"] if lca["midpoint_sample"] else lca["tolerance"] / 2
    return cfg


CONFIG_SUFFIXES = (".yaml", ".yml")


def misread_target(configfiles, cwd) -> str | None:
    """The one-line hint for a target written after `--configfile lca.yaml`, which Snakemake reads as one more
    config file: a later config file that is no YAML file (e.g. a JSON result, `results/plan.json`). A target
    that is no file at all stops Snakemake before the workflow is read, so it never gets here."""
    files = [Path(f) for f in configfiles]
    wrong = next((f for f in files[1:] if f.suffix not in CONFIG_SUFFIXES), None)
    if wrong is None:
        return None
    shown = [os.path.relpath(f, cwd) for f in (files[0], wrong)]
    return (
        f"config: {shown[1]} was read as a config file: a target written after `--configfile {shown[0]}` is read as one more; "
        f"write `--configfile={shown[0]} {shown[1]}`"
    )


def _string_names(cfg: dict) -> None:
    """Layer and group names as strings: YAML reads `layers: {0: ...}` (an nn.Sequential's module 0) as an int."""
    runs = cfg.get("runs") if isinstance(cfg, dict) else None
    for run in (runs if isinstance(runs, dict) else {}).values():
        for key in ("layers", "groups"):
            if isinstance(run, dict) and isinstance(run.get(key), dict):
                run[key] = {str(name): value for name, value in run[key].items()}


def _recorded_runs(cfg: dict) -> None:
    """A run of a recorded trajectory has as many iterations as the file has steps, validates on the
    dataset's test set unless told otherwise (the loop trained on all of train), and its optimizer only
    matters for its weight_decay (the L2 term of the analysed loss)."""
    from .checkpoints import is_checkpoints

    runs = cfg.get("runs") if isinstance(cfg, dict) else None
    for name, run in (runs if isinstance(runs, dict) else {}).items():
        if isinstance(run, dict) and run.get("steps") is not None and not is_checkpoints(run.get("trajectory")):
            raise ConfigError(
                f"config: runs.{name}.steps: only for a trajectory of checkpoint files (a glob or a list); "
                f"{'a recording has its own steps' if run.get('trajectory') else 'a trained run has no checkpoints'}: remove it"
            )
        if isinstance(run, dict) and isinstance(run.get("trajectory"), str | list):
            _no_training_settings(name, run)
            run.setdefault("validation", "test")  # the loop trained on the whole train set
            if isinstance(run.setdefault("optimizer", {}), dict):
                run["optimizer"].setdefault("name", "sgd")
                run["optimizer"].setdefault("lr", 0.05)
            steps = _recorded_steps(run["trajectory"], run.get("steps"), f"config: runs.{name}.trajectory")
            if run.setdefault("iterations", steps) != steps:
                raise ConfigError(
                    f"config: runs.{name}.iterations: {run['iterations']}, but {run['trajectory']} holds {steps} steps; remove iterations"
                )


def _recorded_steps(trajectory, steps, where: str) -> int:
    """The steps of a recording, or the segments of a trajectory of checkpoints (one fewer than the files;
    `steps`: runs.<run>.steps, checked against them)."""
    from .checkpoints import checkpoint_files, is_checkpoints
    from .trajectory import read_recorded

    try:
        if is_checkpoints(trajectory):
            return len(checkpoint_files(trajectory, where, steps)) - 1
        return read_recorded(trajectory, where)["shape"][0] - 1
    except ConfigError:
        raise
    except LCAError as err:
        raise ConfigError(str(err)) from err


def _no_training_settings(name: str, run: dict) -> None:
    """A recorded run has no training settings: its own loop trained it, lcaflow never does. A declared one
    would read as a fact about the recording and be ignored, so it is refused; of the optimizer weight_decay
    stays, the L2 term of the loss analysed."""
    optimizer = run.get("optimizer") if isinstance(run.get("optimizer"), dict) else {}
    declared = [f"optimizer.{k}" for k in optimizer if k != "weight_decay"]
    declared += [k for k in TRAINING_ONLY if k in run and k != "optimizer" and run[k] is not None]
    if declared:
        raise ConfigError(
            f"config: runs.{name}.{declared[0]}: your own loop trained this recorded run, so lcaflow never uses its "
            f"{', '.join(declared)}; remove {'them' if len(declared) > 1 else 'it'} (of the optimizer only weight_decay "
            "applies: the L2 term of the loss analysed)"
        )


def _merged(base: dict, changes: dict) -> dict:
    """base with changes applied key by key; a null change removes the key (its default applies again),
    e.g. {optimizer: {name: adam, momentum: null}} turns an SGD base into Adam."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _expand_experiments(cfg: dict) -> None:
    """An experiment with a base run and seeds declares one run per seed, <experiment>_s<seed>."""
    run_schema = SCHEMA["$defs"]["run"]
    validator = jsonschema.Draft202012Validator(run_schema)
    for name, exp in cfg["experiments"].items():
        where = f"config: experiments.{name}"
        if ("runs" in exp) == ("base" in exp):
            raise ConfigError(
                f"{where}: give either runs (a list of runs) or base (a run to vary over seeds), not {'both' if 'runs' in exp else 'neither'}"
            )
        if "runs" in exp:
            for key in ("seeds", "changes"):
                if exp.get(key):
                    raise ConfigError(f"{where}.{key}: only applies with base; list the runs, or use base")
            continue
        if isinstance(exp["base"], str) and exp["base"] not in cfg["runs"]:
            raise ConfigError(f"{where}.base: {exp['base']!r} is not a run{did_you_mean(exp['base'], cfg['runs'])}; declare it under runs")
        base = cfg["runs"][exp["base"]] if isinstance(exp["base"], str) else exp["base"]
        if not exp.get("seeds"):
            raise ConfigError(f"{where}.seeds: a list of seeds is required with base")
        generated = []
        for seed in exp["seeds"]:
            run_name = f"{name}_s{seed}"
            if run_name in cfg["runs"]:
                raise ConfigError(f"{where}: generated run {run_name!r} clashes with a declared run; rename one")
            run = _merged(base, {**exp["changes"], "seed": seed})
            errors = sorted(validator.iter_errors(run), key=lambda e: len(e.absolute_path))
            if errors:
                raise ConfigError(f"{where}.changes: {_describe(errors[0])}")
            _fill_defaults(run, run_schema)
            cfg["runs"][run_name] = run
            generated.append(run_name)
        exp["runs"] = generated


def _check_analysis(cfg: dict) -> None:
    window = cfg["analysis"]["oscillation_window"]
    if window[0] >= window[1]:
        raise ConfigError(f"config: analysis.oscillation_window: start {window[0]} must be below stop {window[1]}")
    for name, run in cfg["runs"].items():
        bad = [t for t in cfg["analysis"]["heatmap_iterations"] or [] if t >= run["iterations"]]
        if bad:
            raise ConfigError(
                f"config: analysis.heatmap_iterations: {bad[0]} is past the last iteration {run['iterations'] - 1} of run {name}"
            )
    for name, exp in cfg["experiments"].items():
        missing = [r for r in exp["runs"] if r not in cfg["runs"]]
        if missing:
            raise ConfigError(
                f"config: experiments.{name}.runs: {missing[0]!r} is not a run{did_you_mean(missing[0], cfg['runs'])}; declare it under runs"
            )
        if len(set(exp["runs"])) != len(exp["runs"]):
            raise ConfigError(f"config: experiments.{name}.runs: lists a run twice")
        other = exp["compare_with"]
        if other is not None and (other not in cfg["experiments"] or other == name):
            raise ConfigError(f"config: experiments.{name}.compare_with: {other!r} is not another experiment")


def _check_run(name: str, run: dict) -> None:
    from .models import ARCHITECTURES  # late import: torch is heavy and not needed for the schema

    where = f"runs.{name}"
    opt = run["optimizer"]
    custom = is_import_path(run["architecture"])
    if opt["lr"] == "paper":
        key = (run["architecture"], opt["name"], opt["name"] == "sgd" and not opt.get("momentum"))
        if key not in PAPER_LR:
            raise ConfigError(
                f"config: {where}.optimizer.lr: the paper gives no rate for {run['architecture']} with {opt['name']}; give a number"
            )
        opt["lr"] = PAPER_LR[key]
    if not custom and run["architecture"] not in ARCHITECTURES:
        raise ConfigError(
            f"config: {where}.architecture: unknown architecture {run['architecture']!r}{did_you_mean(run['architecture'], ARCHITECTURES)}; "
            f"choose one of {', '.join(sorted(ARCHITECTURES))}, or give <file.py>:<callable>"
        )
    for key in ("architecture_args", "dataset_args"):
        if run[key] and not is_import_path(run[key.removesuffix("_args")]):
            raise ConfigError(f"config: {where}.{key}: only applies to a {key.removesuffix('_args')} given by import path")
    opt = run["optimizer"]
    for key, owner in _OPTIMIZER_ONLY.items():
        if key in opt and opt["name"] != owner:
            raise ConfigError(f"config: {where}.optimizer.{key} applies to {owner} only; remove it for {opt['name']}")
    spec = RunSpec.of(name, run)
    _ = spec.loss  # a loss given by path is imported now: one line rather than in a job
    if is_import_path(spec.example_grouping):  # (classes on a loss without is refused there) imported now too
        from .plugins import load_callable

        load_callable(spec.example_grouping, spec.where("example_groups"))
    # a model given by path is imported and the groups applied now: one line rather than in a job
    layout = spec.meta_layout() if custom or run["groups"] or run.get("layers") else None
    _check_layers(where, run, layout)
    if is_builtin_dataset(run["dataset"]):
        _check_sizes(where, run, OFFICIAL_TRAIN_SIZE[run["dataset"]])  # a user's dataset: checked when it is read


def _check_sizes(where: str, run: dict, official: int) -> None:
    if run["validation"] == "test":
        available = official
    else:
        if run["val_size"] >= official:
            raise ConfigError(f"config: {where}.val_size: {run['val_size']} leaves no training data out of {official}")
        available = official - run["val_size"]
    if run["train_size"] is not None and run["train_size"] > available:
        raise ConfigError(
            f"config: {where}.train_size: {run['train_size']} exceeds the {available} examples left after the split"
        )
    n_train = run["train_size"] or available
    if run["batch_size"] > n_train and not run["trajectory"]:
        raise ConfigError(f"config: {where}.batch_size: {run['batch_size']} exceeds the {n_train} training examples")


def _check_curves(name: str, run: dict, m: int) -> None:
    """lca.example_curves within both splits of a run on a built-in dataset split off its training set (the
    others' sizes are known when their data is read: the gradient jobs check them there)."""
    if not m or not is_builtin_dataset(run["dataset"]) or run["validation"] != "split":
        return
    sizes = {"validation": run["val_size"], "training": run["train_size"] or OFFICIAL_TRAIN_SIZE[run["dataset"]] - run["val_size"]}
    for split, n in sizes.items():
        if m > n:
            raise ConfigError(f"config: lca.example_curves: {m} exceeds the {n} examples of the {split} split of run {name}; lower it")


def _full_name(layer: str, layers) -> str:
    """A layer named by its position alone (`1`) is the default group of that position (`1:Linear`)."""
    if layer in layers:
        return layer
    found = [name for name in layers if name.partition(":")[0] == layer]
    return found[0] if len(found) == 1 else layer


def _check_layers(where: str, run: dict, layout) -> None:
    overrides = run.get("layers") or {}
    if not overrides:
        return
    if layout is not None:
        run["layers"] = overrides = {_full_name(layer, layout.layers): setting for layer, setting in overrides.items()}
    for layer, setting in overrides.items():
        if layout is not None and layer not in layout.layers:
            raise ConfigError(
                f"config: {where}.layers.{layer}: no such layer in {run['architecture']}{did_you_mean(layer, layout.layers)}; "
                f"its layers: {', '.join(layout.layers)}"
            )
        if "momentum" in setting and run["optimizer"]["name"] != "sgd":
            raise ConfigError(f"config: {where}.layers.{layer}.momentum applies to sgd only")
        if setting["freeze"] and setting["freeze_at"] is not None:
            raise ConfigError(f"config: {where}.layers.{layer}: freeze and freeze_at both given; keep one")
        if setting["freeze_at"] is not None and setting["freeze_at"] >= run["iterations"]:
            raise ConfigError(
                f"config: {where}.layers.{layer}.freeze_at: {setting['freeze_at']} is not below iterations {run['iterations']}"
            )
