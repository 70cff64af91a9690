"""A field claimed by two segments refuses only the newcomer, never the healthy incumbent."""

from __future__ import annotations

import shutil

import pytest

from tests.bad_inputs.conftest import Corpus
from tests.e2e.conftest import dbt_build

pytestmark = pytest.mark.e2e

CLAIMER = """
  - name: seg_claimer
    description: A new segment that claims seg_ok's field. One row per endpoint.
    config: {meta: {lakeseg: {exit: {User.UserAttributes.Tier: 'None'}}}}
    columns:
      - name: endpoint_id
        config: {meta: {lakeseg: {field: Id}}}
        data_tests: [unique, not_null, pinpoint_max_length, pinpoint_no_control_chars]
      - name: tier
        config: {meta: {lakeseg: {field: User.UserAttributes.Tier}}}
        data_tests: [pinpoint_max_length, pinpoint_no_control_chars]
"""


def test_a_new_claim_on_a_synced_field_refuses_only_the_newcomer(
    tmp_path, corpus_project, corpus_profiles, corpus_build
):
    # Given seg_ok synced and committed (it owns User.UserAttributes.Tier)
    corpus = Corpus(tmp_path, corpus_project, corpus_profiles, corpus_build)
    assert corpus.sync("seg_ok").exit_code == 0
    # When a new segment claiming the same field is added and the project rebuilt
    project = tmp_path / "project"
    shutil.copytree(corpus_project, project)
    (project / "models" / "segments" / "seg_claimer.sql").write_text(
        "select * from (values ('ep-9', 'Bronze')) t(endpoint_id, tier)\n"
    )
    yml = project / "models" / "segments" / "_segments__models.yml"
    yml.write_text(yml.read_text().rstrip() + "\n" + CLAIMER)
    build = dbt_build(
        tmp_path, "claim", tmp_path / "no-lake", corpus_profiles, "--select", "seg_ok+ seg_claimer+", project=project
    )
    assert build.ok, (build.build_dir / "logs" / "dbt.log").read_text()[-2000:]
    corpus.project, corpus.build = project, build
    out = corpus.sync("seg_ok", "seg_claimer", extra=("--full-refresh",))
    # Then the incumbent keeps syncing (with a note) and only the newcomer is refused, naming the rule
    assert out.exit_code == 1, out.output
    assert out.segment("seg_ok")["status"] == "synced"
    assert any("another segment claims" in n for n in out.segment("seg_ok")["notes"])
    claimer = out.segment("seg_claimer")
    assert claimer["status"] == "refused" and "field-ownership" in claimer["reason"]
    corpus.assert_nothing_committed("seg_claimer")
