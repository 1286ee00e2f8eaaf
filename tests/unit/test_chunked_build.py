"""The batch program built from the syntax tree, run in-process (no server needed)."""

from __future__ import annotations

import contextlib
import io
import textwrap
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smartcolab.mcp.chunked.build import (
    MARKER_PREFIX,
    BatchReport,
    batch_bounds,
    build_batch,
    make_spec,
    marker_for,
    parse_report,
)
from smartcolab.shared.errors import InvalidInput

MARKER = marker_for("test-job")


def run_batches(loop_code: str, n: int, batch: int, *, setup: str = "",
                collect: str | None = None, index_var: str = "i",
                ns: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[BatchReport], str]:
    """Run every batch in one namespace, as a kernel would; stop after a break or failure."""
    spec = make_spec(checkpoint_name="t", loop_code=loop_code, n_iterations=n, batch_size=batch,
                     setup_code=setup, collect=collect, index_var=index_var)
    ns = {} if ns is None else ns
    exec(spec.setup_code, ns)
    reports: list[BatchReport] = []
    shown = ""
    for start, stop in batch_bounds(n, batch):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(build_batch(spec, start, stop, marker=MARKER), ns)
        report, cleaned = parse_report(out.getvalue(), MARKER)
        assert report is not None, out.getvalue()
        reports.append(report)
        shown += cleaned
        if report.broke:
            break
    return ns, reports, shown


def plain_loop(loop_code: str, n: int, setup: str = "") -> dict[str, Any]:
    ns: dict[str, Any] = {}
    exec(textwrap.dedent(setup), ns)
    exec(f"for i in range({n}):\n" + textwrap.indent(textwrap.dedent(loop_code), "    "), ns)
    return ns


MULTI = """
    # a comment line
    x = i * 2
    total += x      # only inside the loop if the body is really a block
    if i % 3 == 0:
        for j in range(i):
            if j == 2:
                break
            inner.append((i, j))
    elif i % 5 == 0:
        continue
    else:
        try:
            1 / (i - 4)
        except ZeroDivisionError:
            errors += 1
    count += 1
"""


def test_multiline_nested_body_matches_plain_loop() -> None:
    setup = "total = 0\ncount = 0\nerrors = 0\ninner = []"
    ns, reports, _ = run_batches(MULTI, 23, 5, setup=setup)
    expected = plain_loop(MULTI, 23, setup)
    for name in ("total", "count", "errors", "inner"):
        assert ns[name] == expected[name], name
    assert sum(r.done for r in reports) == 23
    assert not any(k.startswith("_sc_") for k in ns)


def test_break_ends_the_operation_and_is_reported() -> None:
    ns, reports, _ = run_batches("seen.append(i)\nif i == 12:\n    break", 30, 5,
                                 setup="seen = []")
    assert ns["seen"] == list(range(13))
    assert [r.broke for r in reports] == [False, False, True]
    assert reports[-1].done == 3 and reports[-1].failed is None


def test_collect_after_each_iteration_including_continue_with_repr_fallback() -> None:
    _, reports, _ = run_batches("acc += i\nif i % 2:\n    continue\nacc *= 1", 6, 4,
                                setup="acc = 0", collect="acc")
    values = [(i, v) for r in reports for i, v, _ in r.values]
    assert values == [(0, 0), (1, 1), (2, 3), (3, 6), (4, 10), (5, 15)]
    _, reports, _ = run_batches("pass", 2, 2, collect="{1, 2} if i else float('nan')")
    assert [(v, is_repr) for _, v, is_repr in reports[0].values] == [("nan", True), ("{1, 2}", True)]


def test_failure_reports_index_and_reraises_the_real_exception() -> None:
    spec = make_spec(checkpoint_name="t", loop_code="print('at', i)\nif i == 7:\n    raise KeyError('boom')",
                     n_iterations=10, batch_size=10)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(KeyError, match="boom"):
        exec(build_batch(spec, 0, 10, marker=MARKER), {})
    report, cleaned = parse_report(out.getvalue(), MARKER)
    assert report is not None and report.failed == 7 and report.done == 7
    assert report.traceback is not None
    assert report.traceback.rstrip().endswith("KeyError: 'boom'")
    assert ", line 9, in <module>" in report.traceback  # the raise, in the built program
    assert cleaned == "".join(f"at {k}\n" for k in range(8))
    assert MARKER_PREFIX not in cleaned


def test_failing_collect_fails_that_iteration() -> None:
    spec = make_spec(checkpoint_name="t", loop_code="pass", n_iterations=5, batch_size=5,
                     collect="1 / (i - 3)")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(ZeroDivisionError):
        exec(build_batch(spec, 0, 5, marker=MARKER), {})
    report, _ = parse_report(out.getvalue(), MARKER)
    assert report is not None and report.failed == 3 and report.done == 3


def test_custom_index_var_and_reassigned_index() -> None:
    ns, _, _ = run_batches("step = step * 2\nout.append(step)", 4, 3, setup="out = []",
                           index_var="step")
    assert ns["out"] == [0, 2, 4, 6]


def test_syntax_error_reported_with_line_before_anything_runs() -> None:
    with pytest.raises(InvalidInput) as info:
        make_spec(checkpoint_name="t", loop_code="x = 1\nif x:\n    y = (\n", n_iterations=3,
                  batch_size=1)
    assert info.value.details["field"] == "loop_code"
    assert info.value.details["line"] == 3
    assert "line 3" in info.value.message
    with pytest.raises(InvalidInput, match="setup_code has a syntax error on line 2"):
        make_spec(checkpoint_name="t", loop_code="pass", n_iterations=1, batch_size=1,
                  setup_code="a = 1\nb = = 2")
    with pytest.raises(InvalidInput, match="collect"):
        make_spec(checkpoint_name="t", loop_code="pass", n_iterations=1, batch_size=1,
                  collect="x = 1")
    with pytest.raises(InvalidInput, match="inside a loop"):
        make_spec(checkpoint_name="t", loop_code="return 5", n_iterations=1, batch_size=1)


def test_ipython_setup_is_not_parsed_locally() -> None:
    spec = make_spec(checkpoint_name="t", loop_code="pass", n_iterations=1, batch_size=1,
                     setup_code="%pip install tqdm\nimport tqdm")
    assert spec.setup_code.startswith("%pip")


@pytest.mark.parametrize(("field", "kwargs"), [
    ("checkpoint_name", {"checkpoint_name": "../etc"}),
    ("checkpoint_name", {"checkpoint_name": ""}),
    ("checkpoint_name", {"checkpoint_name": "a" * 65}),
    ("index_var", {"index_var": "1x"}),
    ("index_var", {"index_var": "a b"}),
    ("n_iterations", {"n_iterations": -1}),
    ("n_iterations", {"n_iterations": True}),
    ("batch_size", {"batch_size": 0}),
    ("loop_code", {"loop_code": "   \n# only a comment\n"}),
])
def test_validation(field: str, kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"checkpoint_name": "ok-name_1.x", "loop_code": "pass",
                            "n_iterations": 3, "batch_size": 2, **kwargs}
    with pytest.raises(InvalidInput) as info:
        make_spec(**args)
    assert info.value.details["field"] == field


def test_zero_iterations_is_valid_and_has_no_batches() -> None:
    spec = make_spec(checkpoint_name="t", loop_code="pass", n_iterations=0, batch_size=10)
    assert batch_bounds(spec.n_iterations, spec.batch_size) == []


def test_fingerprint_covers_inputs_but_not_the_name() -> None:
    base = {"loop_code": "x += i", "n_iterations": 10, "batch_size": 3, "setup_code": "x = 0"}
    fp = make_spec(checkpoint_name="a", **base).fingerprint
    assert make_spec(checkpoint_name="b", **base).fingerprint == fp
    for change in ({"n_iterations": 11}, {"batch_size": 4}, {"loop_code": "x -= i"},
                   {"setup_code": "x = 1"}):
        assert make_spec(checkpoint_name="a", **{**base, **change}).fingerprint != fp


def test_report_survives_output_without_trailing_newline_and_junk() -> None:
    assert parse_report("no marker here", MARKER) == (None, "no marker here")
    report, cleaned = parse_report(f"abc\n{MARKER} not json\n", MARKER)
    assert report is None and cleaned.startswith("abc")
    report, cleaned = parse_report(f"abc{MARKER} " + '{"start": 0}', MARKER)
    assert report is None
    good = f'\n{MARKER} {{"start": 0, "stop": 1, "done": 1, "broke": false, "failed": null, ' \
           '"elapsed_s": 0.1,"values":[]}'
    report, cleaned = parse_report("tail without newline" + good, MARKER)
    assert report is not None and report.done == 1 and cleaned == "tail without newline"


# ----------------------------------------------------------------- property tests
_simple = st.sampled_from([
    "acc.append(i)", "total += i * 3", "total -= 1", "acc.append(total % 7)",
    "# just a comment", "pass", "total = total * 2 % 1000003",
])


def _block(depth: int) -> st.SearchStrategy[list[str]]:
    leaf = st.lists(_simple, min_size=1, max_size=3)
    if depth == 0:
        return leaf

    def nest(kind_and_parts: tuple[str, list[str], list[str]]) -> list[str]:
        kind, inner, rest = kind_and_parts
        ind = ["    " + line for line in [*inner, "pass"]]  # never a block of comments only
        head = {"if": "if i % 3 == 1:", "for": "for j in range(i % 4):",
                "while": "k = 0\nwhile k < 2:", "try": "try:"}[kind]
        lines = head.split("\n")
        if kind == "while":
            ind.insert(0, "    k += 1")  # first: a 'continue' in the block must not skip it
        if kind == "try":
            ind.append("    1 // (i % 5)")
            return [*lines, *ind, "except ZeroDivisionError:", "    total += 100", *rest]
        return [*lines, *ind, *rest]

    return st.one_of(
        leaf,
        st.tuples(st.sampled_from(["if", "for", "while", "try"]), _block(depth - 1),
                  st.lists(_simple, max_size=2)).map(nest),
        st.tuples(st.lists(_simple, max_size=2), st.sampled_from(
            ["if i % 4 == 3:\n    continue", "if i == 17:\n    break"]),
            st.lists(_simple, max_size=2)).map(lambda t: [*t[0], *t[1].split("\n"), *t[2]]),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.lists(_block(2), min_size=1, max_size=3),
       n=st.integers(min_value=0, max_value=25), batch=st.integers(min_value=1, max_value=9),
       indent=st.sampled_from(["", "    ", "\t"]))
def test_batched_loop_computes_what_a_plain_loop_computes(
        body: list[list[str]], n: int, batch: int, indent: str) -> None:
    lines = [line for block in body for line in block] + ["total += 0"]  # never only comments
    code = "\n".join(indent + line for line in lines)
    setup = "acc = []\ntotal = 0"
    ns, reports, _ = run_batches(code, n, batch, setup=setup, collect="total")
    expected = plain_loop(code, n, setup)
    assert ns["acc"] == expected["acc"]
    assert ns["total"] == expected["total"]
    if n:
        assert [i for r in reports for i, _, _ in r.values] == list(
            range(sum(r.done for r in reports)))


def test_cached_program_is_the_program_built_from_the_tree() -> None:
    from smartcolab.mcp.chunked import build as chunked

    spec = make_spec(checkpoint_name="t", loop_code=MULTI, n_iterations=50, batch_size=7,
                     collect="total")
    for start, stop in ((0, 7), (42, 49), (49, 50)):
        assert build_batch(spec, start, stop, marker=MARKER) == chunked._build(
            spec, start, stop, MARKER)
