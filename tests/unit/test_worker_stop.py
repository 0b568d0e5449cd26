"""supervisor.WorkerStop's bound: armed by the first stop request, kept by the flag, cleared once the stop is done;
then the exit's own bound."""

from __future__ import annotations

import signal

from tabletopic.supervisor import WorkerStop


def test_a_stop_request_arms_the_kernels_bound_once_and_disarm_clears_it():
    stop = WorkerStop(30.0)
    try:
        stop.request("SIGTERM")
        armed = signal.getitimer(signal.ITIMER_REAL)[0]
        assert 30.0 < armed <= 32.0  # the bound plus the margin
        stop.request("supervisor_gone")  # a second request neither moves the bound nor the reason
        assert signal.getitimer(signal.ITIMER_REAL)[0] <= armed
        assert stop.flag.requested and stop.flag.reason == "SIGTERM"
    finally:
        stop.disarm()
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0.0
    assert stop.flag.requested  # the stop itself stands


def test_once_the_service_returned_the_rest_of_the_process_gets_the_exit_bound():
    stop = WorkerStop(4.0)
    try:
        stop.request("SIGTERM")
        stop.bound_exit(25.0)
        assert 24.0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 25.0  # the exit's bound, not the stop's
    finally:
        stop.disarm()


def test_an_exit_that_hangs_is_ended_by_the_kernel_at_the_exit_bound():
    """What an orphaned worker did: its service stopped, then its interpreter's exit waited on librdkafka's
    threads for good (a Kafka client freed by the last garbage collection). Here an atexit hook hangs."""
    import subprocess
    import sys
    import textwrap

    program = textwrap.dedent("""
        import atexit, time
        from tabletopic.supervisor import WorkerStop
        stop = WorkerStop(30.0)
        stop.install()
        atexit.register(time.sleep, 600)
        stop.bound_exit(1.0)
    """)
    ended = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=120)
    assert ended.returncode == -signal.SIGALRM, ended.stderr
