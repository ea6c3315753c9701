"""Errors meant for people: each says what went wrong, where, and how to fix it.

The CLI prints ``str(error)`` of any EdgeAgentError on one line and exits with ``exit_code``;
everything else is a bug and keeps its traceback.
"""


class EdgeAgentError(Exception):
    """Base of every error the agent reports to a person instead of a traceback."""

    exit_code = 1
    kind = "error"

    def __str__(self) -> str:
        return "%s: %s" % (self.kind, self.detail)

    @property
    def detail(self) -> str:
        """The message without its kind, for places that say the kind themselves."""
        return super().__str__()


class ConfigError(EdgeAgentError):
    """A config, pipeline or device profile file is missing, malformed or contradicts itself."""

    exit_code = 2
    kind = "config error"


class ModelError(EdgeAgentError):
    """A model file is missing, corrupt, or does not fit the pipeline that names it."""

    exit_code = 3
    kind = "model error"


class BackendUnavailable(EdgeAgentError):
    """An inference backend cannot run here; the message is the reason."""

    exit_code = 4
    kind = "backend unavailable"


class SourceError(EdgeAgentError):
    """A frame source cannot be opened or has failed."""

    exit_code = 5
    kind = "source error"


class OutputError(EdgeAgentError):
    """Results cannot be delivered (MQTT misconfigured, outbox unusable)."""

    exit_code = 6
    kind = "output error"


class MissingDependency(EdgeAgentError):
    """A library the agent needs on every board (OpenCV) is not importable in this install."""

    exit_code = 7
    kind = "missing dependency"
