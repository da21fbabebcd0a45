"""The Flower side of fedcomp: ClientApp, ServerApp, tracking strategy, ledger mod, wire sizes."""
