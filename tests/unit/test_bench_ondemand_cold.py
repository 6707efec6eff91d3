"""bench/ondemand.py tells a cold run from one answered by a saved artifact by counting the
upstream's whole GETs of the file in its access log (bench/servers.py's ``fetches``
format), before and after."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import ondemand

pytestmark = pytest.mark.fast

LARGE = "/pulp/content/bench-ondemand/od/bench-large/big.bin"
GIB = 1 << 30
LINE = "{method} {status} {size} {path}\n"


def test_the_upstream_path_drops_the_on_demand_distribution() -> None:
    assert ondemand.upstream_path(LARGE) == "/pulp/content/bench-large/big.bin"


def test_only_whole_gets_of_the_file_count(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    big = "/pulp/content/bench-large/big.bin"
    log.write_text(
        LINE.format(method="GET", path=big, status=200, size=GIB)
        + LINE.format(method="HEAD", path=big, status=200, size=0)
        + LINE.format(method="GET", path=big + ".sig", status=200, size=GIB)
        + LINE.format(method="GET", path=big + "?x=1", status=200, size=GIB)
        + LINE.format(method="GET", path="/pulp/content/bench-medium/0001.bin", status=200,
                      size=GIB)
        + LINE.format(method="GET", path=big, status=502, size=GIB)
        + LINE.format(method="GET", path=big, status=200, size=1 << 20)  # cut short
        + f"GET 200 5 /{big}\n"  # another target that contains the path
        + LINE.format(method="GET", path=big, status=200, size=GIB))
    assert ondemand.upstream_fetches(str(log), LARGE, GIB) == 2
    assert len(ondemand.upstream_requests(str(log), LARGE)) == 4
    # Counted after the first 3 GETs of the file: the last one only.
    assert ondemand.upstream_fetches(str(log), LARGE, GIB, since=3) == 1


def test_no_log_yet_is_no_fetch(tmp_path: Path) -> None:
    assert ondemand.upstream_fetches(str(tmp_path / "absent.log"), LARGE, GIB) == 0


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
