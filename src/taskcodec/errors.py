"""The exception tree. Every error taskcodec raises derives from :class:`TaskcodecError`.

::

    TaskcodecError (ValueError)
    ├── ArgumentTypeError (also TypeError)   an argument of the wrong kind (list for an array...)
    ├── CorruptStreamError                   bytes that are not a valid frame
    │   ├── ChecksumError
    │   └── UnsupportedVersionError
    ├── TableMismatchError                   a frame coded with other tables
    ├── LimitExceededError                   a valid frame larger than a caller's limit
    ├── CudaUnavailableError (also RuntimeError)  GPU path asked for, no kernels or no device
    ├── MissingDependencyError (also ImportError) an optional extra is not installed
    ├── SplitError                           a model that cannot be cut where asked
    ├── MissingDataError (also FileNotFoundError) weights, photos or a dataset not on this machine
    │   └── MissingWeightsError
    ├── ModelMismatch                        FL: a frame that decodes but does not fit the model
    │   └── DownlinkMismatch
    └── PipelineError                        the device / edge / cloud pipeline
        ├── BadInputError                    a request's payload cannot be used
        ├── PlanError                        a plan that breaks the schema or the rules
        ├── PlanRefused                      a request the pipeline cannot serve
        └── EdgeUnavailable                  the edge cannot be reached or failed on its side
            └── AuthenticationError          a server refused the token (401 / 403)

The classes live here, in one module that imports nothing, so every layer can raise them
without importing another; the subpackages re-export the ones that belong to them.
"""

from __future__ import annotations

__all__ = [
    "TaskcodecError",
    "ArgumentTypeError",
    "CorruptStreamError",
    "ChecksumError",
    "UnsupportedVersionError",
    "TableMismatchError",
    "LimitExceededError",
    "CudaUnavailableError",
    "MissingDependencyError",
    "SplitError",
    "MissingDataError",
    "MissingWeightsError",
    "ModelMismatch",
    "DownlinkMismatch",
    "PipelineError",
    "BadInputError",
    "PlanError",
    "PlanRefused",
    "EdgeUnavailable",
    "AuthenticationError",
]


class TaskcodecError(ValueError):
    """Base of every taskcodec error; also raised for invalid arguments."""


class ArgumentTypeError(TaskcodecError, TypeError):
    """An argument of the wrong kind (a list where an array is needed, a float for a count)."""


# ---------------------------------------------------------------------------- frames
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


# ---------------------------------------------------------------------------- devices, models, data
class CudaUnavailableError(TaskcodecError, RuntimeError):
    """A CUDA array was given, but this build carries no CUDA kernels or no device is usable."""


class MissingDependencyError(TaskcodecError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


class SplitError(TaskcodecError):
    """The model cannot be cut where asked (unknown name, skip connection across the cut...)."""


class MissingDataError(TaskcodecError, FileNotFoundError):
    """Model weights, photos or a dataset are not on this machine; the message says how to get them."""


class MissingWeightsError(MissingDataError):
    """A pretrained checkpoint is neither cached nor installed."""


# ---------------------------------------------------------------------------- federated learning
class ModelMismatch(TaskcodecError):
    """A frame that decoded but does not fit the model it is added to (names, shapes)."""


class DownlinkMismatch(ModelMismatch):
    """A downlink step or record that does not fit the node's copy of the model."""


# ---------------------------------------------------------------------------- pipeline
class PipelineError(TaskcodecError):
    """Base of the device / edge / cloud pipeline's errors."""


class BadInputError(PipelineError):
    """A request's payload cannot be used (not a JPEG, wrong tensor shape, unknown task)."""


class PlanError(PipelineError):
    """A plan (from a planner or a client) does not follow the plan schema or the rules."""


class PlanRefused(PipelineError):
    """The request is not one the pipeline can serve; the message says what it can do."""


class EdgeUnavailable(PipelineError):
    """The edge could not be reached, timed out, or failed on its side."""


class AuthenticationError(EdgeUnavailable):
    """A server refused the request's token (HTTP 401 / 403)."""
