"""Child processes that die with the process that started them.

A local network (the demo, the benchmarks, the tests) starts a hub and nodes
as child processes. If the parent is killed (``kill -9``, a test runner's
timeout, a closed terminal), nothing runs its ``finally`` or ``atexit``, and
the servers would keep running and holding their ports. On Linux the kernel
can send the child a signal when its parent dies (``PR_SET_PDEATHSIG``); that
is set in the child between fork and exec, through ``preexec_fn``.

Children also get their own session (``start_new_session``), so a Ctrl-C in
the terminal reaches only the parent, which stops them in order.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _libc()  # loaded before any fork: the child must not import or allocate much


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive sig when this process dies.

    None where the kernel offers no such thing (not Linux): there the parent's
    finally/atexit is all there is. The signal is SIGTERM, so a server still
    shuts down cleanly (lock released, runtime file removed).

    The kernel ties the child to the *thread* that forked it: start children
    from a thread that lives as long as they should (the main thread does).
    """
    libc = _LIBC
    if libc is None:
        return None
    parent = os.getpid()
    signum = int(sig)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody will signal us.
        if os.getppid() != parent:
            os._exit(1)

    return preexec
