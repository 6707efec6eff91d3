"""Development helpers: settings for a throw-away Pulp, demo and test data.

Not used by the content app itself; shipped so ``make demo``, the tests and the
benchmarks build the same things the same way.
"""
