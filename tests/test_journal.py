"""The journal of finished cases: a live session's is left alone, a dead one's becomes partial spooled runs.

A journal's writer is a real process: one that is alive (this test process) holds its
lock; one that ended (a ``python -c`` that exits without closing it) does not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_promptgate.tracking import Journal, journal_dir, recover, record_id

pytestmark = pytest.mark.skipif(os.name != "posix", reason="journals are recovered where flock exists")


def case(eval_name: str, variant: str, case_id: str, outcome: str = "passed") -> dict:
    from pytest_promptgate.results import CaseResult

    passed = outcome == "passed"
    return CaseResult(eval=eval_name, variant=variant, case_id=case_id, passed=passed, score=float(passed)).to_dict()


WRITER = """
import json, os, sys
from pathlib import Path
from pytest_promptgate.tracking import Journal
journal = Journal(Path(sys.argv[1]), "dead-session", {"pid": os.getpid(), "started_ms": 1000,
                  "tracking_uri": "sqlite:///x.db", "experiment_prefix": "promptgate"})
for data in json.loads(sys.argv[2]):
    journal.case(data, {"suites": ["core"], "dataset_hash": "abc", "runs": {"a": {"target": "t:f"}}})
os._exit(0)  # killed: the journal is neither closed nor removed
"""


def killed_session(rootdir: Path, cases: list[dict]) -> None:
    subprocess.run([sys.executable, "-c", WRITER, str(journal_dir(rootdir)), json.dumps(cases)], check=True)


def test_a_dead_sessions_journal_becomes_partial_spooled_runs_with_a_stable_record_id(tmp_path):
    killed_session(tmp_path, [case("e", "a", "c1"), case("e", "a", "c2", "failed"), case("e", "b", "c1")])
    spool = tmp_path / "spool"
    recovered = recover(tmp_path, spool)
    assert (recovered.runs, recovered.journals, recovered.problems) == (2, 1, [])
    records = {r["variant"]: r for r in (json.loads(p.read_text()) for p in spool.glob("*.json"))}
    assert {v: (r["metrics"]["total_cases"], r["metrics"]["passed_cases"], r["complete"]) for v, r in records.items()} == {
        "a": (2, 1, False), "b": (1, 1, False),
    }
    assert records["a"]["record_id"] == record_id("dead-session", "e", "a")  # what the session itself would log
    assert records["a"]["params"] == {"dataset_hash": "abc", "target": "t:f"}
    assert records["a"]["tracking_uri"] == "sqlite:///x.db"
    assert list(journal_dir(tmp_path).glob("*.jsonl")) == []
    assert recover(tmp_path, spool).runs == 0  # nothing twice


def test_a_running_sessions_journal_is_left_alone(tmp_path):
    journal = Journal(journal_dir(tmp_path), "live-session", {"pid": os.getpid(), "started_ms": 1000})
    journal.case(case("e", "a", "c1"), None)
    try:
        assert recover(tmp_path, tmp_path / "spool").runs == 0
        assert journal.path.exists()
    finally:
        journal.close(keep=False)
    assert not journal.path.exists()


def test_a_line_cut_short_by_the_kill_is_left_out(tmp_path):
    killed_session(tmp_path, [case("e", "a", "c1"), case("e", "a", "c2")])
    path = next(journal_dir(tmp_path).glob("*.jsonl"))
    path.write_text(path.read_text()[:-40])  # the last case's line, half written
    recover(tmp_path, tmp_path / "spool")
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "spool").glob("*.json")]
    assert [c["case_id"] for c in record["cases"]] == ["c1"]


def test_a_journal_that_cannot_be_read_stays_and_says_why(tmp_path):
    directory = journal_dir(tmp_path)
    directory.mkdir(parents=True)
    (directory / "x-1.jsonl").write_text('{"not": "a journal"}\n')
    recovered = recover(tmp_path, tmp_path / "spool")
    assert recovered.runs == 0
    assert recovered.problems == [f"the journal {directory / 'x-1.jsonl'} of a killed session could not be recovered: "
                                  "not a journal of format 1"]
    assert (directory / "x-1.jsonl").exists()
