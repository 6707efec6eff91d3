"""The Redis response cache, laid out exactly like pulpcore's ``AsyncContentCache``.

One Redis hash per distribution (``[<domain>:]<base_path>``), one field per
``<path>:<method>``, JSON entries that carry their own expiry, and a
``DISTRO#GUARD#PRESENT`` field per distribution. Because the layout is pulpcore's,
pulpcore's own model hooks (new publication or version, distribution change, remote or
guard deletion, reclaim) invalidate our entries, and this app and pulpcore-content can
share one Redis during a migration, each serving the other's entries.
"""
