"""A deadline for code that may spin in native code (which no thread can interrupt): run it in a
fresh process and fail the test if it has not answered in time."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

import pytest


def within(seconds: float, function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` in a spawned process (a forked one may deadlock on the parent's native
    thread pools); its result, or a test failure if it runs past `seconds`. `function` must be a
    module-level function, its arguments and result picklable."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        pending = pool.apply_async(function, args)
        try:
            return pending.get(timeout=seconds)
        except multiprocessing.TimeoutError:
            pool.terminate()
            pytest.fail(f"{function.__name__} did not answer within {seconds} s: it spins, or its process died")
