"""Checkpoint distributions and the grace period of superseded publications."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pulpcore.constants import CHECKPOINT_TS_FORMAT

from pulp_content_asgi.devtools import data
from tests.helpers import raw_get, unique_name, url


def ts(moment: datetime) -> str:
    return moment.strftime(CHECKPOINT_TS_FORMAT)


@pytest.fixture(scope="module")
def checkpoints():
    u = unique_name()
    repo = data.repository(f"ckpt-{u}", {"f.txt": b"first"})
    first = data.publish(repo.latest_version(), checkpoint=True)
    time.sleep(1.1)  # checkpoints are named by the second
    second = data.publish(data.add_files(repo, {"g.txt": b"second"}), checkpoint=True)
    distribution = data.distribute(f"ckpt-{u}", repository=repo, checkpoint=True)
    time.sleep(1.1)  # so that "a second after the last checkpoint" is in the past
    return distribution, first, second


def test_root_lists_checkpoints(server, checkpoints):
    distribution, first, second = checkpoints
    page = httpx.get(url(server, distribution))
    assert page.status_code == 200
    for publication in (first, second):
        assert f'<a href="./{ts(publication.pulp_created)}/">' in page.text


def test_exact_timestamp_serves_that_checkpoint(server, checkpoints):
    distribution, first, second = checkpoints
    old = httpx.get(url(server, distribution, f"{ts(first.pulp_created)}/g.txt"))
    assert old.status_code == 404  # g.txt came with the second checkpoint
    new = httpx.get(url(server, distribution, f"{ts(second.pulp_created)}/g.txt"))
    assert new.status_code == 200 and new.content == b"second"
    listing = httpx.get(url(server, distribution, f"{ts(first.pulp_created)}/"))
    assert listing.status_code == 200 and "f.txt" in listing.text


def test_non_canonical_timestamps_redirect_to_the_checkpoint_in_force(server, checkpoints):
    distribution, _, second = checkpoints
    after = ts(second.pulp_created + timedelta(seconds=1))
    assert second.pulp_created + timedelta(seconds=1) < datetime.now(UTC)
    response = httpx.get(url(server, distribution, f"{after}/g.txt"))
    assert response.status_code == 301
    assert response.headers["location"] == (
        f"/pulp/content/{distribution.base_path}/{ts(second.pulp_created)}/g.txt")


@pytest.mark.parametrize("segment", ["20200230T000000Z", "2020-01-01", "99990101T000000Z",
                                     "19700101T000000Z"])
def test_impossible_future_malformed_or_too_early_timestamps_are_404(server, checkpoints,
                                                                     segment):
    distribution, _, _ = checkpoints
    assert httpx.get(url(server, distribution, f"{segment}/f.txt")).status_code == 404


def test_timestamp_without_slash_redirects(server, checkpoints):
    distribution, first, _ = checkpoints
    stamp = ts(first.pulp_created)
    response = httpx.get(url(server, distribution, stamp))
    assert response.status_code == 301
    assert response.headers["location"].endswith(f"/{stamp}/")


def test_checkpoint_redirects_keep_the_query_string(server, checkpoints):
    distribution, first, second = checkpoints
    base = f"/pulp/content/{distribution.base_path}"
    after = ts(second.pulp_created + timedelta(seconds=1))
    query = "a=1&b=%2F&c"
    for path, location in [
            (f"{base}/{after}/g.txt", f"{base}/{ts(second.pulp_created)}/g.txt"),
            (f"{base}/{ts(first.pulp_created)}", f"{base}/{ts(first.pulp_created)}/")]:
        status, headers, _ = raw_get(server, f"{path}?{query}")
        assert (status, headers["location"]) == (301, f"{location}?{query}")


def test_superseded_publication_serves_during_its_grace_period(server, unique):
    """A removed file is still served from the superseded publication until its
    DistributedPublication expires (pulpcore's DISTRIBUTED_PUBLICATION_RETENTION_PERIOD);
    the expiry is moved into the past in the database instead of waiting for it."""
    from django.test import override_settings
    from django.utils import timezone
    from pulpcore.app.models import DistributedPublication

    with override_settings(DISTRIBUTED_PUBLICATION_RETENTION_PERIOD=3600):
        repo = data.repository(f"grace-{unique}", {"old.txt": b"old", "new.txt": b"new"})
        distribution = data.distribute(f"grace-{unique}", repository=repo)
        first = data.publish(repo.latest_version())
        assert httpx.get(url(server, distribution, "old.txt")).content == b"old"
        data.publish(data.remove_files(repo, ["old.txt"]))
    during = httpx.get(url(server, distribution, "old.txt"))
    assert during.status_code == 200 and during.content == b"old"
    superseded = DistributedPublication.objects.filter(distribution=distribution,
                                                       publication=first)
    assert superseded.get().expires_at > timezone.now()
    superseded.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert httpx.get(url(server, distribution, "old.txt")).status_code == 404
    assert httpx.get(url(server, distribution, "new.txt")).content == b"new"
