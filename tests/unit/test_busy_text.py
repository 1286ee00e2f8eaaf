"""What a call on a busy session answers (mcp/jobflow.busy_text)."""

from __future__ import annotations

from smartcolab.mcp.jobflow import busy_text
from smartcolab.shared.errors import SessionBusy


def test_a_refusal_names_the_running_job_its_time_and_the_choices() -> None:
    exc = SessionBusy("busy", details={"running_job": "j-abc", "running_for_s": 73.4,
                                       "running_code": "\nfor epoch in range(10):\n    fit()",
                                       "queued": 1})
    text = busy_text(exc, "main")
    assert text.startswith("Not run: session 'main' is busy with job j-abc (running for 73 s: "
                           "for epoch in range(10):")
    assert "with 1 more queued" in text and "Nothing was queued" in text
    assert "get_job(job_id='j-abc')" in text and "cancel_job(job_id='j-abc')" in text
    assert "another session" in text and "run_code_long" in text


def test_a_queued_long_job_says_behind_what_and_never_names_no_job() -> None:
    exc = SessionBusy("busy", details={"running_job": None, "queued": 2,
                                       "queued_jobs": ["j-q1", "j-q2"]})
    text = busy_text(exc, "s", queued_as="j-new")
    assert "j-new is queued behind it" in text and "cancel_job(job_id='j-new')" in text
    assert "None" not in text
    refused = busy_text(SessionBusy("busy", details={"queued": 2}), "s")
    assert "None" not in refused and "list_jobs" in refused
