"""Process-wide settings: everything npcnn changes beyond its own objects, in one place.

Apart from the kernel backend (``kernels.set_backend``), these are the only global state npcnn
touches.  Each one says what it changes, who calls it, and why.

``set_threads(count)`` — how many threads the maths may use.  Called by you (or a command line's
    ``--threads``).  Two libraries start threads of their own: the BLAS behind NumPy's matrix
    products (OpenBLAS) and Numba's parallel loops.  Both spin while they wait for work, which is
    fast on an idle machine and disastrous on a busy one: with more busy threads than cores,
    spinning threads steal the time the working ones need (we measured a small training epoch
    30x slower).  So use one thread per process when several processes share the cores (test
    workers, a busy server), and all cores for one big training run on an otherwise idle machine.
    BLAS's limit (via threadpoolctl) holds for the whole process.  Numba's own count is per
    thread (``numba.set_num_threads`` changes only the calling thread), so npcnn also records the
    count here and every Numba kernel applies it on whichever thread calls it
    (``thread_limit``): one ``npcnn.set_threads(1)`` in the main thread limits a web server's
    request threads too.

``keep_freed_memory_for_reuse()`` — glibc's ``malloc`` keeps big freed blocks.  Called by
    ``Sequential.fit``: only a process that trains needs it.  See its docstring.

``spin_openmp_threads_briefly()`` — the default of ``GOMP_SPINCOUNT``.  Called by the Numba backend
    when it loads, before its first parallel loop starts OpenMP.  Numba runs parallel loops on
    OpenMP threads.  After a loop they wait for more work: spinning for a while, then sleeping.
    Sleeping costs ~40 us per loop to wake up again (measured on a 2-core virtual machine), a
    third of the time of one image's forward pass; spinning forever (``OMP_WAIT_POLICY=ACTIVE``)
    burns a core while idle and starves any other thread, above all BLAS's own threads (training
    ran 10x slower).  So: spin for about a millisecond, enough to bridge the gaps between the
    layers of a step.  A setting already in the environment wins.

``yield_to_the_maths_threads()`` — the calling thread runs at a lower priority (10 more nice).
    Called by the thread that prepares augmented batches while the model trains
    (``batching.prefetch``).  The maths runs one thread per core; a third busy thread takes its
    turns on one of the cores, and every parallel loop then waits for the thread that lost them.
    At a lower priority it mostly runs in the maths' pauses instead (measured: shipped model,
    ``benchmarks/bench_fit.py``, 2 threads, about 5% more images/s).  It never starves: when no
    batch is ready, the maths waits and the cores are its.  Linux only (elsewhere nothing happens).

``pin_numba_blas_to_one_thread()`` — the BLAS that Numba's ``np.dot`` calls runs single-threaded.
    Called by the Numba kernels before each parallel loop that multiplies matrices.  Those loops
    call BLAS from inside Numba's threads; if BLAS started threads of its own as well, its idle
    threads and Numba's would fight over the cores (up to 10x slower).  ``set_threads`` sets every
    BLAS to its count; this one we keep at 1.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

from .errors import ConfigError

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # optional: without it only Numba's threads are controlled
    threadpool_limits = None

_thread_limit: int | None = None  # set by set_threads; None: Numba's own per-thread count


def set_threads(count: int | None = None) -> int:
    """Let BLAS and Numba use ``count`` threads (``None`` or 0: every core), on every thread of
    the process; returns the count used."""
    global _thread_limit
    if not count:
        count = os.cpu_count() or 1
    if count < 1:
        raise ConfigError(f"the thread count must be at least 1, not {count}")
    if threadpool_limits is not None:
        threadpool_limits(count, user_api="blas")
    _thread_limit = count
    try:
        import numba

        numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    return count


def yield_to_the_maths_threads(niceness: int = 10) -> bool:
    """Make the calling thread ``niceness`` nicer than it is (Linux: a thread has a nice value of
    its own); True if it could.  Elsewhere ``PRIO_PROCESS`` with a thread's id would name a
    process, so nothing is done."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        thread = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + niceness))
    except (AttributeError, OSError):  # not Linux, or not allowed
        return False
    return True


def thread_limit() -> int | None:
    """The thread count ``set_threads`` last chose for the process (``None``: never called)."""
    return _thread_limit


def keep_freed_memory_for_reuse() -> bool:
    """Ask glibc's ``malloc`` to keep big freed blocks for reuse instead of returning them.

    Training allocates and frees arrays of tens of MB every step.  By default glibc hands such
    blocks back to the kernel and the next allocation faults every page in again, zero-filled:
    we measured 10% of a lenet-plus training step spent doing that.  Keeping blocks of up to
    32 MiB in the heap (and trimming it only past 512 MiB of free space) ends that; the peak
    memory does not change.  Nothing is done off Linux/glibc, or when the ``MALLOC_*``
    environment variables already choose.  Returns whether the setting was applied.

    It changes the whole process, so npcnn does it only where a process trains: ``Sequential.fit``.
    """
    if sys.platform != "linux" or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
        return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(
            libc.mallopt(m_trim_threshold, 512 << 20)
        )
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False


def spin_openmp_threads_briefly() -> None:
    """Default ``GOMP_SPINCOUNT`` to 100,000 (about a millisecond) unless the environment chose.

    OpenMP reads it when it loads, at Numba's first parallel loop: call this before that."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "100000")


def _scipy_blas_controllers() -> list:
    """threadpoolctl's handles on the BLAS that Numba's ``np.dot`` calls (SciPy's)."""
    try:
        import scipy
        import scipy.linalg.cython_blas  # noqa: F401  (loads the library)
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return []
    package = os.path.dirname(scipy.__file__)
    places = (package, package.rstrip(os.sep) + ".libs")
    return [
        lib
        for lib in ThreadpoolController().lib_controllers
        if lib.user_api == "blas" and lib.filepath.startswith(places)
    ]


_SCIPY_BLAS: list | None = None


def pin_numba_blas_to_one_thread() -> None:
    """Keep the BLAS called inside Numba's threads at one thread (``set_threads`` may have set
    every BLAS to more)."""
    global _SCIPY_BLAS
    if _SCIPY_BLAS is None:
        _SCIPY_BLAS = _scipy_blas_controllers()
    for lib in _SCIPY_BLAS:
        if lib.num_threads != 1:
            lib.set_num_threads(1)
