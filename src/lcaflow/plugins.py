"""User code named in the config by import path: "<file.py>:<callable>" or "<dotted.module>:<callable>".

A relative file path is read from the directory Snakemake runs in (its working directory, `-d`).
Every way this can fail is one line saying which config key to fix."""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

from .errors import ConfigError, looked_in


def source_file(ref: str) -> str | None:
    """The .py file of a file-path reference (an input of the rules that run it), None for a module path."""
    module = ref.rpartition(":")[0]
    return module if module.endswith(".py") else None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _import_file(path: str, where: str):
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(
            f"{where}: file {path} not found{looked_in(path)}; give a path relative to where snakemake runs, or absolute"
        )
    file = file.resolve()
    return _load(str(file), file.stat().st_mtime_ns, path, where)


@functools.cache
def _load(resolved: str, mtime_ns: int, path: str, where: str):
    """Import a file once per version of it (keyed by its absolute path and modification time)."""
    file = Path(resolved)
    name = f"lcaflow_user_{file.stem}_{hashlib.sha256(str(file).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, pickling and typing look modules up by name
    if str(file.parent) not in sys.path:
        sys.path.append(str(file.parent))  # so that the file can import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise ConfigError(f"{where}: importing {path} failed ({_first_line(err)}); fix the file") from err
    return module


def load_callable(ref: str, where: str):
    """The callable that `ref` names; `where` is the config key, e.g. "runs.r.architecture"."""
    module_ref, sep, attr = ref.rpartition(":")
    if not sep or not module_ref or not attr:
        raise ConfigError(f"{where}: {ref!r} is not an import path; write <file.py>:<callable> or <dotted.module>:<callable>")
    if source_file(ref):
        module = _import_file(module_ref, where)
    else:
        try:
            module = importlib.import_module(module_ref)
        except ModuleNotFoundError as err:
            raise ConfigError(
                f"{where}: no module {module_ref!r} ({_first_line(err)}); install it or give a .py file path"
            ) from err
        except Exception as err:
            raise ConfigError(f"{where}: importing {module_ref} failed ({_first_line(err)}); fix the module") from err
    target = getattr(module, attr, None)
    if target is None:
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))[:8]
        raise ConfigError(f"{where}: {module_ref} has no {attr!r}; its callables: {', '.join(found) or 'none'}")
    if not callable(target):
        raise ConfigError(f"{where}: {ref} is a {type(target).__name__}, not a callable")
    return target


def call_user(ref: str, where: str, *args, **kwargs):
    """Call the callable `ref` names, turning an exception raised inside it into one line."""
    fn = load_callable(ref, where)
    try:
        return fn(*args, **kwargs)
    except TypeError as err:
        raise ConfigError(
            f"{where}: calling {ref} failed ({_first_line(err)}); check its arguments against its signature"
        ) from err
    except Exception as err:
        raise ConfigError(f"{where}: {ref} raised {_first_line(err)}; fix it or its arguments") from err
