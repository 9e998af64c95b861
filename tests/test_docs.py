"""The documentation runs as written: every `snakemake` command shown in README.md and docs/*.md
parses with Snakemake's own argument parser and dry-runs against the repository's workflow, every
relative link points to an existing file (and heading), and every config key is documented."""

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_BLOCKS = {"bash", "sh", "shell", "console"}
PROGRAMS = ("snakemake", ".venv/bin/snakemake")
# Commands that name something the reader makes first: checked on what it is made from.
STAND_INS = {"profiles/mycluster": "profiles/slurm"}  # `cp -r profiles/slurm profiles/mycluster`
# Commands that are not dry runs of the workflow, by option: run for real in the temporary
# working directory (they change nothing there that matters), or skipped with the reason.
RUN_FOR_REAL = {"--unlock", "--lint"}
SKIP = {
    "--report": "needs finished results; test_workflow.py::test_report_gathers_the_figures makes a report from a real run",
}
NEEDS = {"--sdm": ("conda", "--sdm conda needs conda installed")}
# Configs whose runs read something the reader makes first (a recorded trajectory): made, small, in the
# working directory before the dry run, by the command the docs show.
PREPARE = {
    "configs/examples/char_transformer.yaml": ["examples/char_transformer/train.py", "--steps", "3"],
    **dict.fromkeys(
        ["configs/examples/char_transformer_tokens.yaml", "configs/examples/char_transformer_windows.yaml"],
        ["examples/char_transformer/train.py", "--steps", "3", "--train-windows", "250", "--out", "results/examples/char_transformer_tokens/recorded.h5"],
    ),
    # one Trainer run of 2 steps: the callback's recording, and checkpoint-0, -1, -2 for the checkpoint config
    **dict.fromkeys(
        ["configs/examples/gpt2_trainer.yaml", "configs/examples/gpt2_trainer_checkpoints.yaml"],
        ["examples/gpt2_trainer/train.py", "--steps", "2", "--save-steps", "1"],
    ),
}


@dataclass
class Command:
    page: str
    text: str  # as shown
    argv: list[str]  # the arguments after `snakemake`, stand-ins replaced
    targets: set = field(default_factory=set)
    rest: list[str] = field(default_factory=list)  # argv without the targets


def shell_lines(markdown: str):
    """Lines of fenced shell blocks (backslash continuations joined), and the text outside fences."""
    outside, lines = [], []
    for i, part in enumerate(re.split(r"^```", markdown, flags=re.M)):
        if i % 2 == 0:
            outside.append(part)
            continue
        lang, _, body = part.partition("\n")
        if lang.strip() in SHELL_BLOCKS:
            lines += body.replace("\\\n", " ").splitlines()
    return lines, "".join(outside)


def commands_of(text: str) -> list[list[str]]:
    """The `snakemake ...` commands of one shell line (comments dropped, split at && ; || |)."""
    tokens, found, current = shlex.split(text, comments=True), [], []
    for token in [*tokens, ";"]:
        if token in ("&&", "||", ";", "|"):
            if current and current[0] in PROGRAMS and len(current) > 1:
                found.append(current[1:])
            current = []
        else:
            current.append(token)
    return found


def documented_commands() -> list[Command]:
    commands = []
    for page in PAGES:
        lines, prose = shell_lines(page.read_text())
        inline = [m.group(1) for m in re.finditer(r"(?<!`)`([^`\n]+)`(?!`)", prose)]
        for text in lines + [code for code in inline if code.startswith(tuple(p + " " for p in PROGRAMS))]:
            for argv in commands_of(text):
                argv = [STAND_INS.get(a, a) for a in argv]
                commands.append(Command(str(page.relative_to(REPO)), text.split("#")[0].strip(), argv))
    return commands


def _parser():
    from snakemake.cli import get_argument_parser

    return get_argument_parser()


def parse(argv: list[str]):
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            return _parser().parse_args(argv)
    except SystemExit as exit_:
        message = errors.getvalue().strip().splitlines()[-1:] or ["(no message)"]
        raise ValueError(f"snakemake {shlex.join(argv)}: {message[0]}") from exit_


def _same(a, b) -> bool:
    unaddressed = lambda v: re.sub(r" at 0x[0-9a-f]+", "", repr(v))
    return a == b or unaddressed(a) == unaddressed(b)


def split_targets(command: Command) -> None:
    """Separate the positional targets from the options, when that provably changes nothing else."""
    args = vars(parse(command.argv))
    command.targets = set(args["targets"])
    rest = [a for a in command.argv if a not in command.targets]
    again = vars(parse(rest)) if command.targets else args
    if not again["targets"] and all(_same(v, again[k]) for k, v in args.items() if k != "targets"):
        command.rest = rest
    else:  # a target that is also an option's value: keep the command as it is
        command.rest, command.targets = list(command.argv), set()


COMMANDS = documented_commands()


def groups() -> list[list[Command]]:
    """Commands that differ only in their targets share one dry run (one parse of the Snakefile)."""
    by_options: dict[tuple, list[Command]] = {}
    for command in COMMANDS:
        try:
            split_targets(command)
        except ValueError:
            continue  # reported by test_every_command_parses
        by_options.setdefault(tuple(command.rest), []).append(command)
    return list(by_options.values())


GROUPS = groups()


def test_the_readme_shows_how_to_run_and_test():
    readme = (REPO / "README.md").read_text()
    assert ".venv/bin/python -m pytest" in readme  # .ci/run runs it
    shown = {shlex.join(c.argv) for c in COMMANDS if c.page == "README.md"}
    assert "--cores all" in shown and "--cores all --configfile=configs/paper/fig4.yaml claims" in shown, shown
    first_screen = readme.split("\n## ", 1)[0]  # what LCA is, one command block (install, plan, run, test), the picture
    assert first_screen.count("```bash") == 1 and first_screen.count("./install.sh") == 1 and "overview.png" in first_screen
    assert all(step in first_screen for step in (" plan ", "--cores all ", "pytest"))
    assert len(COMMANDS) >= 20 and {c.page for c in COMMANDS} >= {"README.md", "docs/running.md", "docs/cluster.md"}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"{c.page}:{shlex.join(c.argv)}"[:90])
def test_every_command_parses(command):
    args = parse(command.argv)
    for path in args.configfile or []:
        assert (REPO / path).is_file(), (
            f"{command.page}: `{command.text}`: config file {str(path)!r} does not exist "
            "(write --configfile=<file> with the =: without it, --configfile takes every following word as a config file)"
        )
    profiles = args.profile if isinstance(args.profile, list) else [args.profile] if args.profile else []
    for profile in profiles:
        assert (REPO / profile).is_dir(), f"{command.page}: `{command.text}`: no profile {profile}"


_PREPARED: dict[tuple, Path] = {}  # each preparing command runs once per session; its results are copied


def _prepare(command: list[str], workdir: Path, env: dict, temporary) -> None:
    """What `command` makes under results/ (run once, in a folder of `temporary`, pytest's tmp_path_factory),
    copied into `workdir`."""
    if tuple(command) not in _PREPARED:
        made = temporary.mktemp("prepared")
        (made / "examples").symlink_to(REPO / "examples")
        subprocess.run([sys.executable, *command], cwd=made, check=True, capture_output=True, timeout=300, env=env)
        _PREPARED[tuple(command)] = made
    shutil.copytree(_PREPARED[tuple(command)] / "results", workdir / "results", dirs_exist_ok=True)


def _run(group: list[Command], workdir: Path, temporary) -> subprocess.CompletedProcess:
    """The group's command in `workdir` (results and .snakemake land there), from the repository root."""
    (workdir / "config.yaml").symlink_to(REPO / "config.yaml")  # the Snakefile reads it from the workdir
    (workdir / "examples").symlink_to(REPO / "examples")  # user code is read relative to the workdir
    path = [str(REPO / "src"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    argv = list(group[0].argv)
    for config in parse(argv).configfile or []:
        if str(config) in PREPARE:
            _prepare(PREPARE[str(config)], workdir, env, temporary)
    if len(group) > 1:  # one dry run for all: every target (the default one is `all`)
        targets = set().union(*(c.targets or {"all"} for c in group))
        argv = [*sorted(targets), *group[0].rest]
    extra = [] if RUN_FOR_REAL & set(argv) else ["-n", "--quiet", "rules"]
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *argv, "-d", str(workdir), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: shlex.join(g[0].rest)[:70] or "(default)")
def test_every_command_dry_runs(group, tmp_path, tmp_path_factory):
    argv = set(group[0].argv)
    for option, reason in SKIP.items():
        if option in argv:
            pytest.skip(f"{option}: {reason}")
    for option, (program, reason) in NEEDS.items():
        if option in argv and shutil.which(program) is None:
            pytest.skip(reason)
    result = _run(group, tmp_path, tmp_path_factory)
    out = result.stdout + result.stderr
    shown = "\n".join(f"  {c.page}: {c.text}" for c in group)
    assert result.returncode == 0, f"these commands fail:\n{shown}\n{out[-3000:]}"
    if not RUN_FOR_REAL & argv:
        assert "This was a dry-run" in out or "Nothing to be done" in out, out[-2000:]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    _, prose = shell_lines(page.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", prose, flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_to_existing_files(page):
    _, prose = shell_lines(page.read_text())
    prose = re.sub(r"`[^`\n]*`", "", prose)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO)}: broken links {broken}"


def schema_keys(node: dict, prefix: str = "") -> set[str]:
    """The leaf keys of the schema (sections such as `lca` or `runs.<name>.optimizer` are headings)."""
    if "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[1]]
    keys = set()
    for name, sub in node.get("properties", {}).items():
        below = schema_keys(sub, f"{prefix}{name}.")
        keys |= below or {prefix + name}
    items = node.get("additionalProperties")
    if isinstance(items, dict):
        keys |= schema_keys(items, prefix)
    return keys


SCHEMA = json.loads((REPO / "src" / "lcaflow" / "config.schema.json").read_text())


def test_every_config_key_is_documented():
    """Each key of the schema has a row in a table of docs/configuration.md (the row may drop the
    section's prefix: `dataset` under runs, `optimizer.lr`, `layers.<layer>.freeze`)."""
    text = (REPO / "docs" / "configuration.md").read_text()
    rows = set(re.findall(r"^\| `([^`]+)` \|", text, flags=re.M))
    missing = [
        key
        for key in sorted(schema_keys(SCHEMA))
        if key not in rows
        and not any(row.endswith("." + key.rsplit(".", 1)[-1]) or row == key.rsplit(".", 1)[-1] for row in rows)
    ]
    assert not missing, f"docs/configuration.md has no row for {missing}"
