"""Which segments may sync: the model and every test attached to it must have passed in the latest
dbt invocation. Decided from hand-written manifest and run_results dicts; reasons compared whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync.dbt.artifacts import Artifacts, Eligibility
from sync.dbt.contract import load_segments

SEG = "model.p.seg_a"
OTHER = "model.p.seg_b"
BUILD = "run `dbt build` (or `lakeseg run`)"


def model_node(uid: str) -> dict:
    name = uid.rsplit(".", 1)[1]
    return {
        "unique_id": uid,
        "resource_type": "model",
        "name": name,
        "path": f"segments/{name}.sql",
        "schema": "main",
        "columns": {"endpoint_id": {"name": "endpoint_id", "meta": {"lakeseg": {"field": "Id"}}}},
        "config": {"meta": {"lakeseg": {"exit": "keep"}}},
    }


def test_node(name: str, model: str = SEG) -> dict:
    return {
        "unique_id": f"test.p.{name}",
        "resource_type": "test",
        "name": name,
        "attached_node": model,
        "test_metadata": {"name": name.split("_seg")[0]},
    }


test_node.__test__ = False  # a builder, not a test

TESTS = ("unique_seg_a_endpoint_id", "not_null_seg_a_endpoint_id")


def verdict(model_result: dict | None, test_results: dict[str, dict], tests=TESTS, run_results_extra=None):
    """The eligibility of seg_a, given its model's result and its tests' results (by test name)."""
    nodes = {SEG: model_node(SEG), OTHER: model_node(OTHER)}
    nodes.update({f"test.p.{t}": test_node(t) for t in tests})
    results = [] if model_result is None else [{"unique_id": SEG, **model_result}]
    results += [{"unique_id": f"test.p.{t}", **r} for t, r in test_results.items()]
    run_results = {"results": results, **(run_results_extra or {})}
    art = Artifacts(Path("target"), {"nodes": nodes}, run_results)
    segment = next(s for s in load_segments(art.manifest) if s.unique_id == SEG)
    return art.eligibility(segment)


PASSED = {t: {"status": "pass", "failures": 0} for t in TESTS}


def test_a_built_and_tested_segment_may_sync():
    assert verdict({"status": "success"}, PASSED) == Eligibility(True, "", [])


def test_a_segment_without_attached_tests_is_eligible_here():
    # (lakeseg check refuses a segment without its required tests; eligibility only reads results.)
    assert verdict({"status": "success"}, {}, tests=()) == Eligibility(True, "", [])


def test_a_test_attached_to_another_model_is_not_this_segments():
    # Given seg_b's test failing in the invocation that built seg_a (seg_b itself not built)
    art = Artifacts(
        Path("target"),
        {
            "nodes": {
                SEG: model_node(SEG),
                OTHER: model_node(OTHER),
                "test.p.b": test_node("unique_seg_b_endpoint_id", OTHER),
            }
        },
        {
            "results": [
                {"unique_id": SEG, "status": "success"},
                {"unique_id": "test.p.b", "status": "fail", "failures": 4},
            ]
        },
    )
    seg_a, seg_b = load_segments(art.manifest)
    # When each segment's eligibility is decided
    # Then seg_a may sync, and seg_b is refused as not built
    assert art.eligibility(seg_a) == Eligibility(True, "", [])
    assert art.eligibility(seg_b) == Eligibility(False, f"not built in the latest dbt invocation: {BUILD}", [])


@pytest.mark.parametrize("run_results_extra", [None, {"results": None}], ids=["no-result-for-it", "results-null"])
def test_a_model_the_invocation_did_not_build_may_not_sync(run_results_extra):
    # Given a dbt invocation that built other models only (e.g. `dbt build -s seg_b`)
    # When seg_a's eligibility is decided
    v = verdict(None, {}, run_results_extra=run_results_extra)
    # Then it is refused with the command to run
    assert v == Eligibility(False, f"not built in the latest dbt invocation: {BUILD}", [])


NOT_BUILT = "in the latest dbt invocation (model.p.seg_a); dbt's message is in dbt's log"


@pytest.mark.parametrize(
    "result,reason",
    [
        pytest.param(
            {"status": "error", "message": "  Runtime Error in model seg_a\n  Binder Error: x  \n"},
            f"model error {NOT_BUILT}",
            id="with-a-message",
        ),
        pytest.param(
            {"status": "error", "message": "Could not convert string 'Smith, Jr.' to INT32"},
            f"model error {NOT_BUILT}",
            id="a-message-quoting-a-value",
        ),
        pytest.param({"status": "error", "message": None}, f"model error {NOT_BUILT}", id="null-message"),
        pytest.param({"status": "skipped"}, f"model skipped {NOT_BUILT}", id="skipped"),
        pytest.param({"status": "pass", "message": "ok"}, f"model pass {NOT_BUILT}", id="a-test-status-is-not-success"),
    ],
)
def test_a_model_that_did_not_succeed_may_not_sync(result, reason):
    # Given seg_a's model result not `success` (its tests passed or not: they do not matter then)
    # When its eligibility is decided
    # Then the reason gives the status and the model's node id, never dbt's message (it may quote data)
    assert verdict(result, PASSED) == Eligibility(False, reason, [])


@pytest.mark.parametrize(
    "results,reason,failed",
    [
        pytest.param(
            {TESTS[0]: {"status": "fail", "failures": 3}, TESTS[1]: {"status": "pass"}},
            "tests did not pass: unique_seg_a_endpoint_id (fail, 3 failing rows)",
            ["unique_seg_a_endpoint_id (fail, 3 failing rows)"],
            id="failing-rows-counted",
        ),
        pytest.param(
            {TESTS[0]: {"status": "fail", "failures": 0}, TESTS[1]: {"status": "pass"}},
            "tests did not pass: unique_seg_a_endpoint_id (fail)",
            ["unique_seg_a_endpoint_id (fail)"],
            id="zero-failures-not-shown",
        ),
        pytest.param(
            {TESTS[0]: {"status": "warn", "failures": 1}, TESTS[1]: {"status": "error"}},
            "tests did not pass: unique_seg_a_endpoint_id (warn, 1 failing rows); not_null_seg_a_endpoint_id (error)",
            ["unique_seg_a_endpoint_id (warn, 1 failing rows)", "not_null_seg_a_endpoint_id (error)"],
            id="warn-and-error-both-listed",
        ),
        pytest.param(
            {TESTS[0]: {"status": "skipped"}},
            "tests did not pass: unique_seg_a_endpoint_id (skipped)",
            ["unique_seg_a_endpoint_id (skipped)"],
            id="failed-before-missing",
        ),
    ],
)
def test_a_segment_whose_tests_did_not_pass_may_not_sync(results, reason, failed):
    # Given seg_a built, and some of its attached tests not `pass`
    # When its eligibility is decided
    # Then every such test is named with its status (and failing rows), before any that did not run
    assert verdict({"status": "success"}, results) == Eligibility(False, reason, failed)


@pytest.mark.parametrize(
    "results,missing",
    [
        pytest.param({TESTS[1]: {"status": "pass"}}, ["unique_seg_a_endpoint_id"], id="one-not-run"),
        pytest.param({}, list(TESTS), id="none-run"),
    ],
)
def test_a_segment_whose_tests_did_not_run_may_not_sync(results, missing):
    # Given seg_a built but some attached tests absent from the run results (`dbt run` instead of `dbt build`)
    # When its eligibility is decided
    # Then the tests that did not run are named, with the command to run
    assert verdict({"status": "success"}, results) == Eligibility(
        False, f"tests did not run in the latest dbt invocation ({', '.join(missing)}): {BUILD}", missing
    )


def test_dbts_messages_which_may_quote_data_go_to_the_debug_log_only_naming_the_node(caplog):
    # Given a model that errored and, in another build, a test that failed, each with a message quoting a value
    with caplog.at_level("DEBUG", logger="sync.dbt.artifacts"):
        model = verdict({"status": "error", "message": "could not cast 'Smith, Jr.'"}, {})
        test = verdict({"status": "success"}, {**PASSED, TESTS[0]: {"status": "fail", "message": "got 'Zyxwv'"}})
    # Then the reasons name the node and the status, never the message
    assert "Smith" not in model.reason and "Zyxwv" not in test.reason
    # And the messages are in the debug log, each with the node it is about
    assert [r.getMessage() for r in caplog.records if r.levelname == "DEBUG"] == [
        f"dbt's message for {SEG}: could not cast 'Smith, Jr.'",
        f"dbt's message for test.p.{TESTS[0]}: got 'Zyxwv'",
    ]
