"""Deploy failures of one host. They stop that host only; the rollout goes on with the others.

(Inventory and option mistakes are agent.errors.ConfigError and stop everything before any host
is touched.)
"""

from ...errors import EdgeAgentError


class DeployError(EdgeAgentError):
    """A step on one host failed: ssh, upload, install, health or rollback."""

    exit_code = 7
    kind = "deploy error"


class HostKeyError(DeployError):
    """The host's SSH key is unknown or has changed: we refuse to talk to that host."""

    kind = "host key error"


class ConnectionLost(DeployError):
    """ssh failed or timed out mid-step: the device may still be finishing that step."""


class Refused(DeployError):
    """The device refused to activate a release that failed its health gate too often."""


class NotRunnable(DeployError):
    """The release's own `edgeagent validate` failed on the device: it never became current."""


DOWN_EXIT_CODE = 8   # some host runs no healthy release (the rollback target failed too)
