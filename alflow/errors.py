"""Exception hierarchy of alflow.

Every error alflow raises on purpose derives from :class:`AlflowError`, so a
caller (the CLI, a notebook, a Firetask) can tell an expected failure with a
clear message from a bug.
"""

from __future__ import annotations


class AlflowError(Exception):
    """Base class of all errors raised by alflow on purpose."""


class ConfigError(AlflowError):
    """A campaign file or a setting is invalid (names the key and the file)."""


class StoreError(AlflowError):
    """The data store cannot be opened, read or written."""


class TrainingError(AlflowError):
    """A committee member could not be trained or loaded."""


class ExplorationError(AlflowError):
    """Molecular dynamics with the committee failed."""


class LabelingError(AlflowError):
    """A reference (DFT or stand-in) calculation failed."""


class StructureError(AlflowError):
    """A structure is unphysical or cannot be read (overlap, NaN, bad cell)."""
