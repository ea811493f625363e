# The two commands of the README, and a few helpers.
#   make run    the service on its embedded default (local PostgreSQL clusters, embedded Rego)
#   make test   everything: real services, fmt, clippy, licences, every test
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: run test conformance services-up services-down services-status fmt lint bench-ledger bench-policy bench-pipeline bench-dashboard

run:
	$(CARGO) run --locked --bin governance-engine -- serve

test:
	bash scripts/test.sh

# OPA's conformance suite on both engines: writes target/conformance.json (needs the
# services: `make services-up` and source their exports, or run inside `make test`).
conformance:
	$(CARGO) test --locked --test conformance -- --nocapture

services-up:
	@scripts/services.sh up

services-down:
	@scripts/services.sh down

services-status:
	@scripts/services.sh status

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

bench-ledger:
	bash scripts/bench-ledger.sh

bench-policy:
	bash scripts/bench-policy.sh

bench-pipeline:
	bash scripts/bench-pipeline.sh

bench-dashboard:
	bash scripts/bench-dashboard.sh
