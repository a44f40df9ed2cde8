"""The errors that mean "your input, files or settings are wrong" (not a bug of ours).

Every such error derives from ``SpikebenchError``; the command line prints its message in
one line and exits with code 2. Any other exception is a bug and keeps its traceback.
The subclasses also derive from the built-in error a Python caller would expect
(``ValueError``, ``FileNotFoundError``, ``KeyError``), so library code can catch either.
"""

from __future__ import annotations


class SpikebenchError(Exception):
    """A problem with the user's input, files or settings; the message says what to do."""


class ConfigError(SpikebenchError, ValueError):
    """A setting has a bad value; the message names it and the allowed values."""


class RunFileError(SpikebenchError):
    """A file of a run folder (checkpoint, status, metrics) or of the output folder cannot
    be read or written; the message names the file and what to do."""


class TrainingDiverged(SpikebenchError, FloatingPointError):
    """Training produced a non-finite loss."""


class MissingFileError(SpikebenchError, FileNotFoundError):
    """A file the user named (weights, a run folder's file) does not exist."""
