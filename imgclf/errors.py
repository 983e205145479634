"""The tool's own errors.

Library code raises these; only the CLI turns them into one line on stderr and exit code 2.
Anything else escaping to the CLI is a bug (exit code 1).
"""


class ImgclfError(Exception):
    """A problem with the user's input: a file, folder, archive, config value or argument.

    The message is shown to the user as a single line, so it must name the problem and,
    where possible, how to fix it.
    """

    exit_code = 2


class ConfigError(ImgclfError):
    """The configuration is invalid (unknown key, wrong type, out of range, incompatible values)."""


class DataError(ImgclfError):
    """The dataset is missing, malformed or unusable."""


class WeightsError(ImgclfError):
    """A weights source is unknown, missing or does not fit the architecture."""


class RunDirError(ImgclfError):
    """A run directory is missing files that the command needs."""


class DiskFullError(ImgclfError):
    """No space left on the device while writing a file (the write is atomic: nothing is half-written)."""
