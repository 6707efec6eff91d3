"""Checkpoint distributions: ``<base>/<YYYYMMDDTHHMMSSZ>/<path>`` serves the newest
checkpoint publication made at or before that second (pulpcore 3.7x checkpoints)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from pulpcore.app.models import Publication, Repository
from pulpcore.constants import CHECKPOINT_TS_FORMAT

from pulp_content_asgi.protocol.listing import Listing

_PATH = re.compile(r"^(\d{8}T\d{6}Z)/?(.*)$", re.DOTALL)


def format_timestamp(moment: datetime) -> str:
    return moment.strftime(CHECKPOINT_TS_FORMAT)


@dataclass(frozen=True)
class CheckpointPath:
    """A parsed ``<timestamp>/<rest>`` path; ``at`` covers the whole named second."""

    at: datetime
    rest: str


def parse(path: str, now: datetime | None = None) -> CheckpointPath | None:
    """None for a malformed, impossible or future timestamp (all answered 404)."""
    found = _PATH.match(path)
    if not found:
        return None
    try:
        at = datetime.strptime(found.group(1), CHECKPOINT_TS_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None
    if at > (now or datetime.now(tz=UTC)):
        return None
    return CheckpointPath(at.replace(microsecond=999999), found.group(2))


def publication_at(repository: Repository, at: datetime) -> Publication | None:
    return (
        Publication.objects.filter(
            repository_version__repository=repository, checkpoint=True, pulp_created__lte=at
        )
        .order_by("-pulp_created")
        .first()
    )


def listing(repository: Repository, title: str) -> Listing:
    created = (
        Publication.objects.filter(repository_version__repository=repository, checkpoint=True)
        .order_by("pulp_created")
        .values_list("pulp_created", flat=True)
    )
    dates = {f"{format_timestamp(c)}/": c for c in created}
    return Listing(title=title, names=frozenset(dates), dates=dates)
