"""One error hierarchy for the whole pipeline.

Every error carries its context as attributes, never personal data in its message.
``Transient`` errors may succeed when retried (a broker that is restarting, a catalog
write conflict); ``Terminal`` ones will not (bad configuration, a missing tool).
The CLI maps :class:`UsageError` to exit code 2 and every other :class:`PipelineError` to 1.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error this package raises on purpose."""


class Transient(PipelineError):
    """Retrying the same operation later may succeed."""


class Terminal(PipelineError):
    """Retrying will not help; a person has to change something."""


class UsageError(Terminal):
    """The command line or the configuration is wrong (exit code 2)."""


class ConfigError(UsageError):
    """A configuration value is missing, malformed or outside its legal range."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class MissingToolError(Terminal):
    """A program the pipeline needs (java, mvn, promtool) is not installed."""

    def __init__(self, tool: str, hint: str) -> None:
        super().__init__(f"{tool} not found: {hint}")
        self.tool = tool
        self.hint = hint


class BrokerError(Transient):
    """The Kafka broker could not be started, reached or stopped."""


class LakeConflict(Transient):
    """Another writer committed to the lake first; the transaction may be retried."""
