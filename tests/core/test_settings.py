"""The process-wide settings: thread counts that hold on every thread, and their checks."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest

import npcnn
from npcnn import kernels, settings
from npcnn.errors import ConfigError

HAVE_NUMBA = "numba" in kernels.available_backends()
needs_numba = pytest.mark.skipif(not HAVE_NUMBA, reason="Numba is not installed")


def on_a_new_thread(fn):
    """``fn()`` run on a fresh thread (as a web server's request thread), its result returned."""
    results = []
    worker = threading.Thread(target=lambda: results.append(fn()))
    worker.start()
    worker.join()
    return results[0]


@pytest.fixture
def restore_threads():
    """Put the test suite's own setting (one thread) back afterwards."""
    yield
    npcnn.set_threads(1)


def test_set_threads_checks_its_count(restore_threads):
    with pytest.raises(ConfigError, match="at least 1"):
        npcnn.set_threads(-1)
    assert npcnn.set_threads(1) == 1
    assert settings.thread_limit() == 1
    assert npcnn.set_threads() == (os.cpu_count() or 1)  # default: every core
    assert settings.thread_limit() == (os.cpu_count() or 1)
    assert npcnn.set_threads(0) == (os.cpu_count() or 1)  # 0, as in --threads 0: every core


@pytest.fixture(scope="module")
def probe():
    """A parallel Numba loop that reports how many threads it ran with."""
    import numba

    @numba.njit(parallel=True)
    def threads_used(out):
        for i in numba.prange(out.size):
            out[i] = numba.get_num_threads()
        return out

    threads_used(np.zeros(1, np.int64))  # compile once, here
    return threads_used


@needs_numba
def test_set_threads_once_limits_kernels_on_every_thread(probe, restore_threads, monkeypatch):
    """Numba's own count is per thread: ``set_threads(1)`` in the main thread must still make a
    parallel kernel called from another thread use one thread (what app.py relies on)."""
    import numba

    from npcnn.kernels.numba import _parallel

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has only one thread here: nothing to limit")
    big = _parallel.PARALLEL_MIN  # large enough to run in parallel

    def probe_run() -> tuple[int, int, int]:
        used = _parallel.run(probe, big, np.zeros(4, np.int64))
        return int(used.max()), _parallel.thread_count(), numba.get_num_threads()

    npcnn.set_threads(1)
    used, count, own = on_a_new_thread(probe_run)
    assert used == count == 1
    assert own == numba.config.NUMBA_NUM_THREADS  # the thread's own Numba count is left alone

    # Without the process-wide limit, a new thread's parallel loops use every Numba thread:
    # the limit above is what made the difference.
    monkeypatch.setattr(settings, "_thread_limit", None)
    used, count, _ = on_a_new_thread(probe_run)
    assert used == count == numba.config.NUMBA_NUM_THREADS


@needs_numba
def test_a_real_kernel_on_a_new_thread_runs_single_threaded(restore_threads, monkeypatch):
    """The same, seen from a kernel: after ``set_threads(1)`` a big ReLU called on a request
    thread sets that thread's Numba count to 1 for the call, and back afterwards."""
    import numba

    from npcnn.kernels import numba as numba_kernels
    from npcnn.kernels.numba import _parallel

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has only one thread here: nothing to limit")
    calls = []

    def spy(count: int) -> None:
        calls.append(count)
        numba.set_num_threads(count)

    monkeypatch.setattr(_parallel, "set_num_threads", spy)
    npcnn.set_threads(1)
    x = np.random.default_rng(0).standard_normal(2 * _parallel.PARALLEL_MIN).astype(np.float32)
    y = on_a_new_thread(lambda: numba_kernels.relu_forward(x))
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    assert calls == [1, numba.config.NUMBA_NUM_THREADS]


def test_keep_freed_memory_for_reuse_reports_what_it_did():
    """Only glibc (Linux) has ``mallopt``; the ``MALLOC_*`` variables, when set, win."""
    applied = kernels.keep_freed_memory_for_reuse()  # the name Sequential.fit calls
    assert applied is settings.keep_freed_memory_for_reuse()
    if any(k.startswith("MALLOC_") for k in os.environ) or sys.platform != "linux":
        assert applied is False


def test_openmp_spin_default_leaves_a_chosen_setting_alone(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv("GOMP_SPINCOUNT", "7")
    settings.spin_openmp_threads_briefly()
    assert os.environ["GOMP_SPINCOUNT"] == "7"
    monkeypatch.delenv("GOMP_SPINCOUNT")
    settings.spin_openmp_threads_briefly()
    assert os.environ["GOMP_SPINCOUNT"] == "100000"
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    settings.spin_openmp_threads_briefly()
    assert "GOMP_SPINCOUNT" not in os.environ


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux's"
)
def test_yield_to_the_maths_threads_lowers_only_the_calling_thread():
    def priority() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    mine = priority()
    seen = {}

    def worker() -> None:
        seen["before"] = priority()
        seen["done"] = npcnn.settings.yield_to_the_maths_threads()
        seen["after"] = priority()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen["done"] and seen["before"] == mine
    assert seen["after"] == min(19, mine + 10)
    assert priority() == mine  # the caller's own thread is untouched


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux's"
)
def test_batches_are_prepared_at_a_lower_priority():
    from npcnn.batching import prefetch

    def priority() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def batches():
        for _ in range(3):
            yield priority()  # runs in the thread that prepares them

    mine = priority()
    assert list(prefetch(batches(), depth=1)) == [min(19, mine + 10)] * 3
