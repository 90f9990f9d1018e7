"""Running the `rcf` command the way a user does: as a separate process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rcf.devnet.processes import die_with_parent

RCF = str(Path(sys.executable).parent / "rcf")


def rcf(
    *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RCF, *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200"},
    )


def ok(*args: str, cwd: Path | None = None) -> str:
    result = rcf(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def fails(*args: str, cwd: Path | None = None) -> str:
    """Run a command that must fail with one clear sentence and no traceback."""
    result = rcf(*args, cwd=cwd)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "no error message"
    assert lines[-1].startswith("error: ") or "Error:" in lines[-1], result.stderr
    return result.stderr


@contextmanager
def serving(*args: str, ready: Path, timeout: float = 20) -> Iterator[subprocess.Popen[bytes]]:
    """Run `rcf ARGS` in the background until ready exists; SIGTERM it afterwards.

    The server dies with the test run even if that is killed (no finally runs then)."""
    proc = subprocess.Popen(
        [RCF, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent(),  # noqa: PLW1509
    )
    try:
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode() if proc.stderr else "exited")
            assert time.monotonic() < deadline, f"{args} did not start"
            time.sleep(0.05)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert code == 0, f"{args} did not stop cleanly ({code})"
