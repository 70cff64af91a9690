"""Bad segment declarations and bad data: `lakeseg check` names model, column and rule (exit 1),
and `lakeseg sync` refuses or skips the segment (exit 1) -- nothing sent, nothing committed."""

from __future__ import annotations

import pytest

from tests.bad_inputs.conftest import QUOTA_PUSH, no_traceback

pytestmark = pytest.mark.e2e

CONTRACT_CASES = [
    # (model, column or None, rule, words the message must contain)
    ("seg_null_exit", None, "exit-value", "null"),
    ("seg_bool_exit", None, "exit-value", "YAML boolean false"),
    ("seg_yes_exit", None, "exit-value", "YAML boolean true"),
    ("seg_list_exit", None, "exit-value", "string or a number"),
    ("seg_exit_unexported", None, "exit", "Attributes.NotExported"),
    ("seg_exit_separator", None, "exit-no-control-chars", "U+2028"),
    ("seg_metric_exit_text", None, "exit-numeric", "'many' is not a number"),
    ("seg_unique_where", "endpoint_id", "required-test", "'unique' test does not count with where: '1=0'"),
    ("seg_not_null_warn", "endpoint_id", "required-test", "'not_null' test does not count with severity: warn"),
    ("seg_control_limit", "val", "required-test", "'pinpoint_no_control_chars' test does not count with limit: 1"),
    ("seg_length_error_if", "val", "required-test", "error_if: '>100'"),
    ("seg_length_fail_calc", "val", "required-test", "fail_calc: 'count(*) * 0'"),
    ("seg_length_loosened", "val", "required-test", "max_length: 1000"),
    (QUOTA_PUSH, None, "custom-attribute-quota", "past Pinpoint's 250 per project"),
]
CONTRACT_IDS = [f"{m}-{r}" for m, _, r, _ in CONTRACT_CASES]


@pytest.fixture(scope="module")
def check_report(corpus_project, corpus_profiles, corpus_build, tmp_path_factory):
    from tests.bad_inputs.conftest import Corpus

    corpus = Corpus(tmp_path_factory.mktemp("check"), corpus_project, corpus_profiles, corpus_build)
    out = corpus.invoke("check", "--no-parse", "--json")
    return out.exit_code, out.report()


@pytest.mark.parametrize("model,column,rule,words", CONTRACT_CASES, ids=CONTRACT_IDS)
def test_check_names_model_column_and_rule(check_report, model, column, rule, words):
    code, report = check_report
    assert code == 1
    hits = [p for p in report["problems"] if p["model"] == model and p["rule"] == rule and p["column"] == column]
    assert hits and any(words in p["message"] for p in hits), [p for p in report["problems"] if p["model"] == model]


@pytest.mark.parametrize("model,column,rule,words", CONTRACT_CASES, ids=CONTRACT_IDS)
def test_sync_refuses_a_segment_that_breaks_the_contract(corpus, model, column, rule, words):
    # given a segment whose model and tests passed in dbt, but whose declaration breaks one rule
    # when syncing it
    out = corpus.sync(model)
    # then it is refused, naming the rule; nothing is sent or committed
    assert out.exit_code == 1, out.output
    seg = out.segment(model)
    assert seg["status"] == "refused" and f"[{rule}]" in seg["reason"] and words in seg["reason"], seg
    corpus.assert_nothing_sent()
    corpus.assert_nothing_committed()


def test_quota_refuses_only_the_segment_that_pushes_past_it(check_report):
    _, report = check_report
    quota = {p["model"] for p in report["problems"] if p["rule"] == "custom-attribute-quota"}
    assert quota == {QUOTA_PUSH}


def test_the_good_segments_pass_check_and_sync(check_report, corpus):
    _, report = check_report
    assert not {p["model"] for p in report["problems"]} & {"seg_ok", "seg_ok_too"}
    out = corpus.sync("seg_ok", "seg_ok_too")
    assert out.exit_code == 0, out.output
    assert corpus.delivered() == {"seg_ok", "seg_ok_too"}
    assert set(corpus.pointers()) == {"seg_ok", "seg_ok_too"}


# Data rules: `pinpoint_no_control_chars` fails in dbt for each of these characters.
CONTROL_CHARS = [
    ("nul", "NUL U+0000"),
    ("vt", "vertical tab U+000B"),
    ("ff", "form feed U+000C"),
    ("cr", "carriage return U+000D"),
    ("esc", "escape U+001B"),
    ("del", "DEL U+007F"),
    ("nel", "next line U+0085"),
    ("csi", "C1 U+009B"),
    ("ls", "line separator U+2028"),
    ("ps", "paragraph separator U+2029"),
]


@pytest.fixture(scope="module")
def control_sync(corpus_project, corpus_profiles, corpus_build, tmp_path_factory):
    from tests.bad_inputs.conftest import Corpus

    corpus = Corpus(tmp_path_factory.mktemp("control"), corpus_project, corpus_profiles, corpus_build)
    return corpus, corpus.sync("seg_control_chars")


@pytest.mark.parametrize("column", [c for c, _ in CONTROL_CHARS], ids=[d for _, d in CONTROL_CHARS])
def test_control_characters_fail_dbt_and_are_never_sent(corpus_build, control_sync, column):
    # given a value holding the control character, built by dbt on DuckDB
    test = f"pinpoint_no_control_chars_seg_control_chars_{column}_note"
    results = {r["unique_id"].split(".")[2]: r for r in corpus_build.results()}
    # then dbt's test failed on that row
    assert results[test]["status"] == "fail" and results[test]["failures"] == 1
    # and the sync skipped the segment naming the failing test; nothing sent or committed
    corpus, out = control_sync
    assert out.exit_code == 1 and no_traceback(out)
    seg = out.segment("seg_control_chars")
    assert seg["status"] == "skipped" and test in seg["reason"]
    corpus.assert_nothing_sent()
    corpus.assert_nothing_committed()
