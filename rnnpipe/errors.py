"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""


class RnnpipeError(Exception):
    """Base class for user-facing errors (bad input, bad config): never a bug in rnnpipe."""


class ConfigError(RnnpipeError):
    """A configuration key or value is wrong."""


class DataError(RnnpipeError):
    """Input data is missing, malformed or unusable; the message names file, column and row."""


class ModelError(RnnpipeError):
    """A registered model or checkpoint cannot be found or does not fit the request."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be so that the same clean-up runs (the run marked as
    stopped, servers stopped); the CLI exits with 143 rather than 130."""
