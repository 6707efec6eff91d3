"""Pure HTTP semantics shared by every way of serving bytes.

Nothing in this package imports Django models or touches a database, so the rules for
ranges, preconditions, listings and paths are tested table-driven and reused unchanged
for local files, object storage and upstream streams.
"""
