"""supervisor.WorkerStop's bound: armed by the first stop request, kept by the flag, cleared once the stop is done."""

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
