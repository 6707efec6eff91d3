"""bench/ondemand.py tells a cold run from one answered by a saved artifact by counting the
upstream's GETs of the file in its access log (nginx's combined format), before and after."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import ondemand

pytestmark = pytest.mark.fast

LARGE = "/pulp/content/bench-ondemand/od/bench-large/big.bin"
LINE = ('127.0.0.1 - - [30/Nov/2026:21:05:20 +0000] "{method} {path} HTTP/1.1" 200 '
        '1073741824 "-" "aiohttp"\n')


def test_the_upstream_path_drops_the_on_demand_distribution() -> None:
    assert ondemand.upstream_path(LARGE) == "/pulp/content/bench-large/big.bin"


def test_only_gets_of_the_file_count(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(
        LINE.format(method="GET", path="/pulp/content/bench-large/big.bin")
        + LINE.format(method="HEAD", path="/pulp/content/bench-large/big.bin")
        + LINE.format(method="GET", path="/pulp/content/bench-large/big.bin.sig")
        + LINE.format(method="GET", path="/pulp/content/bench-medium/0001.bin")
        + LINE.format(method="GET", path="/pulp/content/bench-large/big.bin"))
    assert ondemand.upstream_fetches(str(log), LARGE) == 2


def test_no_log_yet_is_no_fetch(tmp_path: Path) -> None:
    assert ondemand.upstream_fetches(str(tmp_path / "absent.log"), LARGE) == 0


def test_the_report_flags_a_run_that_was_not_cold() -> None:
    from bench import report

    found = {"hashing": {"status": "ran", "runs": []},
             "upstream": {"status": "ran", "runs": [{}]},
             "asgi-granian": {"status": "ran", "runs": [{"large_upstream_fetches": 1},
                                                        {"large_upstream_fetches": 0}]},
             "pulpcore-content": {"status": "ran", "runs": [{}]},
             "pulpcore-content-uvloop": {"status": "did not start"}}
    text = report._cold_runs(found)
    assert "asgi-granian [1, 0] (**a run not cold**)" in text
    assert "pulpcore-content not counted" in text
    assert "uvloop" not in text and "upstream [" not in text
