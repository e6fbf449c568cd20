# speaqr-sip: the two commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(PATH)
# Which molecule scenarios `make test` runs (default: nspawn machine; vm: QEMU VM).
SCENARIOS ?= default vm
# Where `make demo` provisions: nspawn (seconds) or vm (QEMU, minutes under software emulation).
TARGET ?= nspawn

.PHONY: setup demo demo-down test lint unit molecule

setup:
	scripts/host-setup.sh

## Main job: boot a local Debian sid target, provision it with the example inventory, prove a call.
demo: setup
	scripts/demo.sh $(TARGET)

demo-down:
	scripts/target/$(TARGET)-down.sh demo

## Every test: lint, unit, then each molecule scenario (create, converge, idempotence on nspawn, verify, destroy).
test: setup lint unit molecule

lint:
	yamllint --strict .
	ansible-lint
	ruff check .
	ruff format --check .

unit:
	cd agi && pytest -q
	pytest -q tests/unit

# Each scenario's verify writes a JUnit report; after a failure its failed tests are printed last.
molecule:
	rm -rf .test-reports; mkdir -p .test-reports
	set -e; for s in $(SCENARIOS); do \
	  PYTEST_ADDOPTS="--junitxml=$(CURDIR)/.test-reports/$$s.xml" molecule test -s $$s \
	    || { python3 scripts/ci/failed_tests.py .test-reports/$$s.xml; exit 1; }; \
	done
