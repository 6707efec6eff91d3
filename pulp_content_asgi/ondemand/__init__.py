"""On-demand, streamed and pull-through content, with request collapsing.

A content artifact without a stored artifact is fetched from its remotes by one
:class:`~pulp_content_asgi.ondemand.fetch.Fetch` per artifact and process: the download runs
in its own task (a client hanging up never cancels it, so on-demand artifacts are saved
even after Range requests and disconnects, pulpcore#3060), writes into a
:class:`~pulp_content_asgi.ondemand.spool.Spool` file, and every client asking for the
same artifact meanwhile reads that file at its own pace: one upstream request, bounded
memory per client, and a slow client never slows the download or the others.
"""
