"""One writer per run directory: the lock is exclusive, named in the error, and released."""

import subprocess
import sys

import pytest

from fedcomp.core.errors import ConfigError
from fedcomp.core.lock import RunDirInUse, is_locked, lock_run_dir


def test_a_second_holder_fails_at_once_naming_the_directory(tmp_path):
    run_dir = tmp_path / "run"
    assert not is_locked(run_dir)
    with lock_run_dir(run_dir):
        assert is_locked(run_dir)
        with pytest.raises(RunDirInUse) as err, lock_run_dir(run_dir):
            pass
        assert str(run_dir) in str(err.value) and "in use by another run" in str(err.value)
        assert isinstance(err.value, ConfigError)  # commands exit 2 on it
    assert not is_locked(run_dir)
    with lock_run_dir(run_dir):  # released: the next run may take it
        pass


def test_the_lock_of_a_process_that_died_does_not_block(tmp_path):
    code = f"import os; from fedcomp.core.lock import lock_run_dir\nwith lock_run_dir({str(tmp_path)!r}): os._exit(9)"
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 9
    assert (tmp_path / ".lock").exists() and not is_locked(tmp_path)


def test_the_holder_pid_is_named(tmp_path):
    code = (f"import sys, time; from fedcomp.core.lock import lock_run_dir\n"
            f"with lock_run_dir({str(tmp_path)!r}):\n print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirInUse, match=f"pid {holder.pid}"), lock_run_dir(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()
