"""User-facing errors: each carries one line that says what is wrong and how to fix it."""


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
