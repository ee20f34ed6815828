"""The errors a user can cause, each mapped by the CLI to exit code 2 and printed as one line, no traceback."""


class UserError(Exception):
    """A mistake the user can fix: bad config, bad input file, unknown stage, bad record under --strict."""


class ConfigError(UserError):
    """The config file is missing, not YAML, or has an unknown key or a wrong value."""


class InputError(UserError):
    """An input file is missing, unreadable or holds no records."""


class StrictError(UserError):
    """A bad record under --strict; the message names its file:line."""
