"""``python -m fedcomp.deploy [overrides]``: ``fedcomp.run`` on Flower's Deployment Engine.

The same as ``python -m fedcomp.run engine=deployment ...`` (see
:mod:`fedcomp.engines.deployment.engine`), with the same checks before Hydra starts and
the same Ctrl-C handling; an explicit ``engine=`` override wins. Secure by default: TLS
with a CA made for the run and registered SuperNodes only (``engine.tls=false`` for plain
HTTP, with a warning).
"""

from __future__ import annotations

import sys

from fedcomp import run
from fedcomp.engines.interrupt import stop_on_signals


def main() -> None:
    """Add ``engine=deployment`` unless the command line chooses an engine, then run."""
    if not any(arg.split("=")[0].lstrip("+~") == "engine" for arg in sys.argv[1:]):
        sys.argv.insert(1, "engine=deployment")
    with stop_on_signals():
        run.NUM_RUNS[0] = run.check(sys.argv[1:])
        run.main()


if __name__ == "__main__":
    main()
