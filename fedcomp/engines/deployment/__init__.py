"""Flower's Deployment Engine on this machine, one module per concern.

``engine`` (:func:`~fedcomp.engines.deployment.engine.deploy`, ``DeploymentError``),
``federation`` (one SuperLink + N SuperNodes), ``credentials`` (the run's CA, certificate
and SuperNode keys), ``flwr_cli`` (the ``flwr`` CLI), ``superlink`` (the traffic-logging
SuperLink), ``reconcile`` (its counters vs the ledger), ``processes`` (ports, start/stop,
signals), ``errors``.
"""
