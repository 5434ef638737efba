"""`assay run --continuous`: the runner's runs one after another, a trigger interval apart, until a stop.

A continuous pipeline outlives a failed round (a source down, PostgreSQL restarting): the failure
is in the event log and the next round retries the same batch. Between rounds, assay.yml's
maintenance policy is applied and a new run id starts, so history shows each round.
"""
from __future__ import annotations

import time
from typing import Callable

from ..errors import ExpectationFailed, FlowError
from ..maintenance import Policy, auto_maintain


def run_rounds(runner, run_round: Callable[[], None], *, upkeep: Policy, interval_s: float,
               stop_requested: Callable[[], bool], round_failed: Callable[[Exception], None]) -> None:
    """`run_round` runs the runner once (and shows it); `round_failed` is told of a failed round."""
    while True:
        round_started = time.monotonic()
        try:
            run_round()
        except (FlowError, ExpectationFailed) as exc:
            if stop_requested():
                raise
            round_failed(exc)
        if stop_requested():
            return
        for done in auto_maintain(runner.spec, runner.events.log, upkeep, warn=runner.events.on_warning):
            runner.events.on_notice(done.line())
        runner.events.next_run()
        runner.options.full_refresh, runner.options.full_refresh_all = set(), False
        # A trigger interval, as Spark's processingTime: a round longer than it is followed at once.
        deadline = round_started + interval_s
        while time.monotonic() < deadline and not stop_requested():
            time.sleep(min(0.2, interval_s))
        if stop_requested():
            return
