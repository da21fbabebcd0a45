"""Shared fixtures: an identity for Flower messages built outside a run, quiet env."""

import os

import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def flower_task_identity():
    """Flower 1.42 needs a task identity to construct a Message outside an app."""
    from flwr.supercore.task_identity import TaskIdentity

    # a 64-bit task id as a deployment draws it (run_simulation uses 1; see fedcomp.flower.measure)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 2**63 + 7, 42, 1
    yield
