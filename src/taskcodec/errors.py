"""The exception tree. Every error taskcodec raises on purpose derives from TaskcodecError."""

from __future__ import annotations

__all__ = [
    "TaskcodecError",
    "CorruptStreamError",
    "ChecksumError",
    "UnsupportedVersionError",
    "TableMismatchError",
    "LimitExceededError",
]


class TaskcodecError(ValueError):
    """Base of every taskcodec error; also raised for invalid arguments."""


class CorruptStreamError(TaskcodecError):
    """The bytes are not a valid frame (truncated, damaged or not taskcodec at all)."""


class ChecksumError(CorruptStreamError):
    """The frame's CRC32C trailer does not match its contents."""


class UnsupportedVersionError(CorruptStreamError):
    """The frame (or table) was written in a format version this build cannot read."""


class TableMismatchError(TaskcodecError):
    """The frame was coded with other CDF tables than the ones given to decode it."""


class LimitExceededError(TaskcodecError):
    """The frame is well-formed but larger than a caller-given limit (max_symbols)."""
