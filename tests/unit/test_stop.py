"""The one stop policy and outcome mapping (shared/stop.py), driven by a fake clock."""

from __future__ import annotations

import pytest

from smartcolab.shared.stop import Ending, StopPolicy, verdict


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def policy(clock: FakeClock, *, deadline_in: float | None = 10.0, grace_s: float = 5.0
           ) -> StopPolicy:
    deadline = None if deadline_in is None else clock.now + deadline_in
    return StopPolicy(grace_s=grace_s, deadline=deadline, clock=clock, repeat_s=0.25)


def test_nothing_happens_before_the_deadline() -> None:
    clock = FakeClock()
    p = policy(clock)
    p.cell_started()
    assert p.next_action() == "wait"
    assert p.wait_s(0.05) == 0.05
    clock.advance(9.99)
    assert p.wait_s(0.05) == pytest.approx(0.01)
    assert p.wait_s() == pytest.approx(0.01)  # no poll: until the deadline
    assert p.next_action() == "wait" and not p.stopping


def test_deadline_interrupts_repeats_then_restarts() -> None:
    clock = FakeClock()
    p = policy(clock)
    p.cell_started()
    clock.advance(10.0)
    assert p.next_action() == "interrupt"
    assert p.reason == "timed_out" and p.stopping
    assert p.next_action() == "wait"  # not again within repeat_s
    assert p.wait_s() == pytest.approx(0.25)
    clock.advance(0.25)
    assert p.next_action() == "interrupt"  # repeated: one SIGINT can be missed
    signals = 2
    while clock.now < 100.0 + 10.0 + 5.0 - 0.3:
        clock.advance(0.25)
        signals += p.next_action() == "interrupt"
    assert signals >= 19
    clock.advance(0.3)
    assert p.next_action() == "restart"
    assert p.reason == "timed_out"
    assert p.latency() == pytest.approx(5.05)  # counted from the deadline


def test_no_interrupt_until_the_cell_has_started() -> None:
    clock = FakeClock()
    p = policy(clock, deadline_in=None)
    assert p.wait_s() is None  # no deadline, no poll: wait for messages
    assert p.next_action("cancelled") == "wait"  # an idle kernel ignores SIGINT
    assert p.reason == "cancelled"
    assert p.wait_s() == pytest.approx(5.0)  # until the grace period ends
    clock.advance(1.0)
    p.cell_started()
    assert p.next_action("cancelled") == "interrupt"
    clock.advance(4.0)
    assert p.next_action("cancelled") == "restart"  # grace counts from the request


def test_a_cell_that_never_starts_is_restarted_after_the_grace_period() -> None:
    clock = FakeClock()
    p = policy(clock, deadline_in=1.0, grace_s=2.0)
    clock.advance(1.0)
    assert p.next_action() == "wait"
    clock.advance(2.0)
    assert p.next_action() == "restart"


@pytest.mark.parametrize("request_", ["restart", "shutdown"])
def test_restart_and_shutdown_skip_the_interrupt(request_: str) -> None:
    clock = FakeClock()
    p = policy(clock)
    p.cell_started()
    assert p.next_action(request_) == request_  # type: ignore[arg-type]
    assert p.reason == request_


def test_shutdown_during_the_grace_period_keeps_the_first_reason() -> None:
    clock = FakeClock()
    p = policy(clock)
    p.cell_started()
    clock.advance(10.0)
    assert p.next_action() == "interrupt"
    clock.advance(0.1)
    assert p.next_action("shutdown") == "shutdown"
    assert p.reason == "timed_out"


def test_verdicts() -> None:
    ok = verdict(Ending("completed"), timeout=5, grace_s=2)
    assert (ok.status, ok.state_lost, ok.note) == ("succeeded", False, None)
    assert verdict(Ending("completed", failed=True), timeout=5, grace_s=2).status == "failed"
    soft = verdict(Ending("interrupted", "timed_out"), timeout=5, grace_s=2)
    assert soft.status == "timed_out" and not soft.state_lost and "5 s deadline" in (soft.note or "")
    assert verdict(Ending("interrupted", "cancelled"), timeout=5, grace_s=2).status == "cancelled"
    hard = verdict(Ending("restarted", "timed_out"), timeout=5, grace_s=2)
    assert hard.status == "timed_out" and hard.state_lost and "restarted" in (hard.note or "")
    again = verdict(Ending("restarted", "restart"), timeout=None, grace_s=2)
    assert again.status == "cancelled" and "session was restarted" in (again.note or "")


def test_a_kernel_death_is_a_failure_with_its_cause() -> None:
    died = verdict(Ending("died", cause="killed by SIGKILL"), timeout=5, grace_s=2)
    assert died.status == "failed" and died.state_lost
    assert died.error is not None and died.error.ename == "KernelDied"
    assert "SIGKILL" in died.error.evalue and "SIGKILL" in (died.note or "")
    unknown = verdict(Ending("died"), timeout=5, grace_s=2)
    assert unknown.error is not None and "exit status unknown" in unknown.error.evalue
