"""Typed errors. Library code raises these; the CLI maps them to messages and exit codes.

Every message says what went wrong, where, and how to fix it.
"""


class EdgeVitError(Exception):
    """Base class of every error edgevit raises on purpose (exit status 1 in the CLI)."""


class EdgeVitWarning(UserWarning):
    """A result rests on a guess the user should check (the CLI prints it as ``edgevit: warning:``)."""


class CheckpointError(EdgeVitError):
    """A checkpoint is missing, corrupt, of an unknown format, or does not fit the model."""


class DataError(EdgeVitError):
    """Input data is missing, empty, of the wrong shape, or holds NaN/Inf values."""


class MissingDependencyError(EdgeVitError):
    """An optional dependency is not installed; the message holds the install command."""


class ArtifactExistsError(EdgeVitError):
    """An artifact would be overwritten without --force."""


class ExportError(EdgeVitError):
    """Export to ONNX failed, or the exported graph does not match the reference."""


class VerificationError(EdgeVitError):
    """An artifact does not match its reference within tolerance."""


class OnnxModelError(EdgeVitError):
    """An ONNX file is missing, corrupt, or not a model edgevit can run."""


class OutputKindError(EdgeVitError):
    """A model's output does not fit the call: class predictions asked of a model that outputs
    features or tokens (use embed), or embeddings of one that outputs logits."""


class ManifestError(EdgeVitError):
    """An edgevit.json manifest is missing, unreadable, or lacks the artifact asked for."""


class ArtifactIntegrityError(ManifestError):
    """A file's sha256 differs from the one its manifest recorded (changed or replaced since written)."""


class TensorRTError(EdgeVitError):
    """A TensorRT build or load cannot proceed (unsupported version, device, precision, graph)."""


class EngineMismatchError(TensorRTError):
    """An engine was built for another TensorRT version or GPU; rebuild it on the target."""


class OutputPathError(EdgeVitError):
    """An output location cannot be written: a file stands where a directory must be, or no permission."""


class OutputBusyError(OutputPathError):
    """Another edgevit process is writing the same output directory (its lock was not released in time)."""
