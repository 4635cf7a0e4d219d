"""Errors that mean "the user asked for something that cannot work", shown without a traceback."""

from __future__ import annotations


class RtPhysioError(Exception):
    """Base class for user-facing errors: the message alone must say what was wrong and what to do."""

    #: The exit status of ``rt-physio`` when this error ends it.
    exit_status: int = 2


class ConfigError(RtPhysioError):
    """A configuration value, device profile or command-line argument is invalid."""


class SourceError(RtPhysioError):
    """A stream or board could not be found, opened or read, or contradicts its profile."""


class ModelError(RtPhysioError):
    """A model folder, its model.toml or its weights are missing or corrupt."""


class DatasetError(RtPhysioError):
    """A data file or folder is missing, unreadable, or lacks what a training task needs (the message names it)."""


class SourceLostError(SourceError):
    """A source stayed out of streaming longer than ``--give-up-after``: the run ends (exit status 3)."""

    exit_status = 3
