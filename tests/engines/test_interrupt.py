"""The stopping handler on its own: exit code, one line, the whole process tree stopped.

A small Python program stands in for a run: it names a run directory, starts a child
that starts a grandchild (as Ray's raylet starts the actors) and keeps a non-daemon
thread busy (as Flower's ServerApp thread does). The end-to-end runs are in
``tests/test_run_interrupt.py``.
"""

import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

PROGRAM = textwrap.dedent("""
    import subprocess, sys, threading, time
    from pathlib import Path
    from fedcomp.engines import interrupt

    run_dir = Path(sys.argv[1])
    (run_dir / ".summary.json.x.tmp").write_text("half")
    grandparent = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); time.sleep(120)"
    child = subprocess.Popen([sys.executable, "-c", grandparent])
    threading.Thread(target=time.sleep, args=(120,)).start()  # would keep a plain exit waiting
    with interrupt.stop_on_signals(), interrupt.running(run_dir):
        with interrupt.keep_signal_handlers():
            signal_module = __import__("signal")
            signal_module.signal(signal_module.SIGTERM, lambda *_: sys.exit(1))  # as ray.init does
        while len(__import__("psutil").Process().children(recursive=True)) < 2:
            time.sleep(0.05)
        print("ready", flush=True)
        time.sleep(120)
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_one_signal_stops_the_process_and_its_descendants(tmp_path, sig):
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "ready"
    descendants = psutil.Process(proc.pid).children(recursive=True)
    assert len(descendants) == 2
    proc.send_signal(sig)
    assert proc.wait(timeout=5) == 128 + sig
    name = signal.Signals(sig).name
    assert proc.stderr.read().strip() == f"interrupted by {name}: {tmp_path} left incomplete (resume redoes it)"
    _, running = psutil.wait_procs(descendants, timeout=3)
    assert [p for p in running if p.status() != psutil.STATUS_ZOMBIE] == []
    assert not list(tmp_path.glob(".*.tmp"))
