"""User-facing errors: each carries one line that says what is wrong and how to fix it."""

import difflib
from pathlib import Path


class LCAError(Exception):
    """An error caused by input the user controls (config, data, files); shown as one line."""


class ConfigError(LCAError):
    pass


class DataError(LCAError):
    pass


class CorruptFileError(LCAError):
    pass


class DivergenceError(LCAError):
    pass


class GroundingError(LCAError):
    pass


class NotBuiltError(LCAError):
    """An output that the workflow did not make (an option off, a target not asked for): the message names
    the option or target that makes it. Not a damaged file: nothing needs deleting."""


def did_you_mean(name, choices) -> str:
    """' (did you mean 'x'?)' for the choice nearest to a mistyped `name`, or '' when none is near."""
    lowered = {str(c).lower(): str(c) for c in choices}  # case aside: 'Test' is near 'test'
    found = difflib.get_close_matches(str(name).lower(), list(lowered), n=1)
    return f" (did you mean {lowered[found[0]]!r}?)" if found else ""


def looked_in(path) -> str:
    """' (looked in <working directory>)' for a relative path (it is read from there), '' for an absolute one."""
    return "" if Path(path).is_absolute() else f" (looked in {Path.cwd()})"
