"""How many CPU threads the maths may use.

Two libraries start threads of their own: the BLAS behind NumPy's matrix products (OpenBLAS) and
Numba's parallel loops.  Both spin while they wait for work, which is fast on an idle machine and
disastrous on a busy one: with more busy threads than cores, spinning threads steal the time the
working ones need (we measured a small training epoch 30x slower).  So use one thread per process
when several processes share the cores (test workers, a busy server), and all cores for one big
training run on an otherwise idle machine.
"""

from __future__ import annotations

import os

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # optional: without it only Numba's threads are controlled
    threadpool_limits = None


def set_threads(count: int | None = None) -> int:
    """Let BLAS and Numba use ``count`` threads (default: every core); returns the count used."""
    count = count or os.cpu_count() or 1
    if count < 1:
        raise ValueError("the thread count must be at least 1")
    if threadpool_limits is not None:
        threadpool_limits(count, user_api="blas")
    try:
        import numba

        numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    return count
