"""What every Numba kernel shares: the compile options, and how a parallel loop is started.

A kernel's parallel loop runs on Numba's threads.  ``run`` starts it with as many threads as
``npcnn.set_threads`` allows on the calling thread (Numba's count is per thread; the limit is
process-wide), and a small one on the calling thread alone.  ``items_per_task`` cuts a batch into
cache-sized tasks for those threads.
"""

from __future__ import annotations

from numba import get_num_threads, set_num_threads

from ... import settings

# OpenMP (Numba's threads) reads GOMP_SPINCOUNT when it loads, at the first parallel loop: set
# its default before any kernel can run (see npcnn.settings for why).
settings.spin_openmp_threads_briefly()

JIT = dict(cache=True, nogil=True, fastmath=False)  # compiled once, cached on disk
PARALLEL_MIN = 1 << 16  # values written: below this a kernel runs on the calling thread alone
TASK_BYTES = 1 << 20  # column matrix per task: about the size of a core's L2 cache


def thread_count() -> int:
    """Threads a parallel loop started on this thread uses: Numba's count for this thread,
    capped by ``npcnn.set_threads``."""
    count = get_num_threads()
    return min(count, settings.thread_limit() or count)


def run(kernel, work: int, *args):
    """Call a parallel ``kernel`` on ``thread_count()`` threads; a small one on one thread only.

    Waking the other threads costs microseconds on an idle machine, but on a busy one a parallel
    loop waits for every thread to be scheduled: we measured 8 ms (90th percentile) for a loop of
    1,000 values.  One image's layers are that small.
    """
    previous = get_num_threads()  # this thread's own count
    count = 1 if work < PARALLEL_MIN else min(previous, settings.thread_limit() or previous)
    if count == previous:
        return kernel(*args)
    set_num_threads(count)
    try:
        return kernel(*args)
    finally:
        set_num_threads(previous)


def items_per_task(n: int, bytes_per_item: int) -> int:
    """Items (images, or output rows) per task: a column matrix of about ``TASK_BYTES``, and
    at least two tasks per thread, so that a thread slowed down by another program does not
    hold the others up for long."""
    step = max(1, TASK_BYTES // max(bytes_per_item, 1))
    return max(1, min(step, -(-n // (2 * thread_count()))))
