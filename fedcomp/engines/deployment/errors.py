"""The deployment's own errors: a run that could not finish, and a signal that stopped it."""

from __future__ import annotations


class DeploymentError(RuntimeError):
    """The deployment could not run to the end; the message says why.

    Commands exit with code 1 on it (:func:`fedcomp.engines.launch.execute_cli`).
    """


class Interrupted(DeploymentError):
    """A signal (SIGINT, SIGTERM, SIGHUP) asked the deployment to stop."""
