# pulp-content-asgi development commands. `make demo` and `make test` are all you need.
# Databases are named after the checkout (pulp_content_asgi/devtools/databases.py), so any
# number of clones share one PostgreSQL server; `make clean` drops them again.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DB ?=
BIND ?= 127.0.0.1:24816
DEV_ENV = set -a; source .dev/db.env; set +a

.PHONY: demo test test-shuffled test-fast adversarial lint venv database clean bench bench-quick bench-tools test-tools \
	pulp-up pulp-down conformance conformance-ci parity parity-domains parity-plugins parity-plugins-domains clients client-tools \
	conformance-deps fixture-tools

$(VENV)/.installed: pyproject.toml
	dev/plugin-deps.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,plugins]"
	touch $@

venv: $(VENV)/.installed

database:
	dev/database.sh

## Serve a demo repository on http://$(BIND)/pulp/content/demo/ (another checkout: BIND=127.0.0.1:24817)
demo: venv database
	@set -e; $(DEV_ENV); db=$(or $(DEMO_DB),$$($(PY) -m pulp_content_asgi.devtools.databases name demo)); \
	  settings=$$($(PY) -m pulp_content_asgi.devtools.settings .dev/demo $$db); \
	  export PULP_SETTINGS=$$settings; \
	  $(VENV)/bin/pulpcore-manager migrate --noinput >/dev/null; \
	  $(PY) -m pulp_content_asgi.devtools.demo; \
	  echo "Database $$db; open http://$(BIND)/pulp/content/demo/  (Ctrl-C stops the server)"; \
	  exec $(VENV)/bin/pulp-content-asgi --bind $(BIND) --access-logfile -

## Run the whole test suite (real PostgreSQL, real servers on loopback); installs what is
## missing first and says so: curl, redis-server, nginx, gpg, ostree, pgbouncer (apt-get),
## Azurite (npm, .dev/node), the plugin fixtures' tools (fixture-tools: apt-get)
test: venv database test-tools fixture-tools
	@$(DEV_ENV); $(VENV)/bin/pytest -q $(PYTEST_ARGS)

## The whole suite in a shuffled order (pytest-randomly: modules, then the tests in each);
## the seed is printed, RANDOM_SEED=<n> repeats an order
RANDOM_SEED ?= $(shell date +%s)
test-shuffled: venv database test-tools fixture-tools
	@$(DEV_ENV); $(VENV)/bin/pytest -q -p randomly --randomly-seed=$(RANDOM_SEED) \
	  --randomly-dont-reset-seed $(PYTEST_ARGS)

## The fast tier alone: pure and in-process tests, no PostgreSQL, Redis or server
test-fast: venv
	$(VENV)/bin/pytest -q -m fast tests/http tests/unit $(PYTEST_ARGS)

## Hostile input (issue #17) with the big Hypothesis profile, as three pytest lanes side by
## side (tests/adversarial_lanes.py) → reliability/report.md (reliability/README.md: what
## it checks, how long it takes here). ADVERSARIAL_SEED=<n> repeats a run.
ADVERSARIAL_SEED ?= $(shell date +%s)
adversarial: venv database test-tools
	@$(DEV_ENV); $(PY) -m tests.adversarial_lanes --seed=$(ADVERSARIAL_SEED) \
	  --report=$(CURDIR)/reliability/report.md --args="$(ADVERSARIAL_ARGS)"

lint: venv
	$(VENV)/bin/ruff check pulp_content_asgi tests bench conformance clients docs/examples
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --disallow-untyped-defs docs/examples

## Drop this checkout's databases, stop its private PostgreSQL cluster, remove .dev/
clean:
	dev/clean.sh

## Benchmarks side by side with pulpcore-content and nginx (bench/README.md); installs what is
## missing first and says so: wrk, nginx, taskset, redis-server, and perf if it can (apt-get).
## BENCH_ARGS passes options to bench/run.py (e.g. --contenders, --fail-start, --repeats,
## --ports 25500-25599 or BENCH_PORTS=...; a tooling check: BENCH_ARGS="--smoke ...")
bench: venv database bench-tools
	@dev/bench-tools.sh --native
	@$(DEV_ENV); $(PY) -m pip install -q -e ".[plugins,bench]" && $(PY) -m bench.run $(BENCH_ARGS)

bench-quick: venv database bench-tools
	@dev/bench-tools.sh --native
	@$(DEV_ENV); $(PY) -m pip install -q -e ".[plugins,bench]" && $(PY) -m bench.run --quick $(BENCH_ARGS)

bench-tools:
	dev/bench-tools.sh

test-tools:
	dev/test-tools.sh

## A full local Pulp (API, 2 workers, our app, pulpcore-content, nginx): conformance/README.md
pulp-up: venv database bench-tools conformance-deps
	@$(DEV_ENV); $(PY) -m conformance.stack up $(STACK_ARGS)

pulp-down: venv
	@$(PY) -m conformance.stack down; $(PY) -m conformance.stack down --domains

## pulpcore's content-app functional tests: both apps behind both nginx layouts, flaky
## tests repeated 5 times → conformance/report.md (about an hour; CONFORMANCE_ARGS adds options)
conformance: venv database bench-tools conformance-deps
	@$(DEV_ENV); $(PY) -m conformance.run $(CONFORMANCE_ARGS)

## The CI-sized slice: our app behind Pulp's stock nginx layout (under 10 minutes)
conformance-ci: venv database bench-tools conformance-deps
	@$(DEV_ENV); $(PY) -m conformance.run --slice ci --only asgi --proxy stock $(CONFORMANCE_ARGS)

## One corpus of requests to both apps on the same database → conformance/parity.md
parity: venv database bench-tools conformance-deps
	@$(DEV_ENV); $(PY) -m conformance.parity $(if $(PARITY_REPORT),--report $(PARITY_REPORT))

## The same on the DOMAIN_ENABLED stack → conformance/parity-domains.md
parity-domains: venv database bench-tools conformance-deps
	@$(DEV_ENV); $(PY) -m conformance.parity --domains

## Every plugin's content through the REST API from local upstreams, both apps compared →
## conformance/parity-plugins.md (15.5 min under a heavy load, conformance/README.md); installs the fixtures' build tools first (apt-get)
parity-plugins: venv database bench-tools conformance-deps fixture-tools
	@$(DEV_ENV); $(PY) -m conformance.parity_plugins $(PARITY_PLUGINS_ARGS)

## The same on the DOMAIN_ENABLED stack, everything in a domain of its own →
## conformance/parity-plugins-domains.md (its stack's ports: PULP_STACK_PORT + 100)
parity-plugins-domains: venv database bench-tools conformance-deps fixture-tools
	@$(DEV_ENV); $(PY) -m conformance.parity_plugins --domains $(PARITY_PLUGINS_ARGS)

fixture-tools:
	dev/fixture-tools.sh

## Real package clients (dnf, apt, pip, npm, gem, skopeo, podman, mvn, ansible-galaxy, ostree)
## through the stack's nginx against both apps → clients/report.md (clients/README.md);
## CLIENTS_ARGS="--slice ci" for CI's slice (which installs no podman or Maven)
clients: venv database bench-tools conformance-deps fixture-tools client-tools
	@$(DEV_ENV); $(PY) -m clients.run $(CLIENTS_ARGS)

client-tools:
	dev/client-tools.sh $(CLIENTS_ARGS)

conformance-deps: venv
	@$(PY) -m pip install -q -e ".[test,plugins,conformance]"
