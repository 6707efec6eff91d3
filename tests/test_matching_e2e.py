"""Distribution matching over arbitrary rows in PostgreSQL (issue #17): for any set of
distributions, overlapping ones included (an installation upgraded from before pulpcore's
overlap trigger holds them), the query picks the longest base path that is the path or an
ancestor of it, and resolving never ends in a 5xx. In process, on the test database."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import adversarial
from tests.helpers import overlapping_distribution, resolve, unique_name

pytestmark = pytest.mark.adversarial

#: pulpcore's relative_path domain (migration core.0155) refuses whitespace, "?", "#" and
#: empty, "." or ".." segments in base paths: rows it would refuse are not generated.
_REFUSED = re.compile(r"[\s?#]")
_SEGMENT = st.one_of(st.sampled_from(["a", "b", "a.b", "%41", "A", "\u00e9", "e\u0301", "~",
                                      "%", ";", "'", "<b>"]),
                     st.text(st.characters(blacklist_categories=("Cs", "Cc")),
                             min_size=1, max_size=6)
                     ).filter(lambda s: "/" not in s and s not in (".", "..")
                              and not _REFUSED.search(s))
_TAIL = st.lists(_SEGMENT, min_size=1, max_size=3).map("/".join)


def _oracle(path: str, base_paths: set[str]) -> str | None:
    segments = [s for s in path.split("/") if s]
    serving = [b for b in base_paths if b.split("/") == segments[:len(b.split("/"))]]
    return max(serving, key=len, default=None)


@settings(max_examples=adversarial.examples(12), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(tails=st.sets(_TAIL, min_size=1, max_size=5), extra=st.lists(_SEGMENT, max_size=2),
       order=st.randoms(use_true_random=False))
def test_the_query_picks_the_longest_base_path_of_any_rows(tails, extra, order):
    from pulp_file.app.models import FileDistribution

    from pulp_content_asgi.plugin import results
    from pulp_content_asgi.resolution import distributions

    adversarial.TALLIES["matching"].counts["cases"] += 1
    root = f"mt-{unique_name()}"
    base_paths = {f"{root}/{tail}" for tail in tails}
    try:
        # Rows in any order: the longest must win whichever is older.
        created = sorted(base_paths)
        order.shuffle(created)
        for base in created:
            overlapping_distribution(base)
        # (Rows with empty segments or a trailing slash cannot exist: pulpcore's
        # relative_path domain check refuses them in PostgreSQL itself.)
        for base in sorted(base_paths):
            for path in (base, f"{base}/{'/'.join(extra)}", f"{base}//{'/'.join(extra)}/"):
                matched = distributions.match("default", path)
                expected = _oracle(path, base_paths)
                assert (matched.base_path if matched else None) == expected, path
                answer = resolve(re.sub("/{2,}", "/", path))  # merged, as the app does
                assert not (isinstance(answer, results.Failure) and answer.status >= 500), path
    finally:
        FileDistribution.objects.filter(base_path__startswith=f"{root}/").delete()
