# `make run`: install everything on a fresh Debian 12 host and run the main job on all architectures.
# `make test`: the same set-up, then the test suite.
PY := .venv/bin/python
JITPROBE := .venv/bin/jitprobe

.PHONY: setup run test lint images plugin bench

setup:
	bash ci/setup.sh
	$(MAKE) --no-print-directory plugin images

images:
	$(JITPROBE) images build --arch all

plugin:
	$(PY) -m harness.sanitizer.build

run: setup
	$(PY) -m ci.main_job

test: setup
	$(PY) -m pytest -n 2 --timeout=900 tests

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy --strict base harness images jit_core ci litmus
	.venv/bin/mypy tests bench

bench: setup
	$(PY) bench/boot.py
	$(PY) bench/jit.py
	$(PY) bench/litmus_checks.py

# The nightly matrix (ci/matrix.yaml): `make ci-shard SHARD=i/N` on each machine, then `make ci-report`
# where the results folders were gathered (ci/github/nightly.yml does both).
SHARD ?= 1/1
NIGHT ?= $(shell date -u +%Y-%m-%d)
RESULTS ?= runs/matrix-$(NIGHT)
HISTORY ?= runs/history.sqlite
RESULTS_GLOB ?= runs/matrix-*
REPORT ?= runs/report
# each distinct failure of a shard re-run RERUN times (its reproduction rate), then shrunk
RERUN ?= 3

.PHONY: ci-shard ci-report ci-matrix-list
# exit 1 (a cell failed) is the report's to judge; 2 and 3 (bad input, infrastructure) stop here
ci-shard: setup
	$(PY) -m ci.cli matrix run --shard $(SHARD) --night $(NIGHT) --results $(RESULTS) --history $(HISTORY) \
		--resume --rerun $(RERUN) || [ $$? -eq 1 ]

# the report needs only the Python environment (no QEMU, no images)
$(PY):
	python3 -m venv .venv
	.venv/bin/pip install -q -e .

ci-report: $(PY)
	$(PY) -m ci.cli report $(wildcard $(RESULTS_GLOB)) --out $(REPORT) --history $(HISTORY) \
		--kcidb $(REPORT)/kcidb.json --fail-on new

ci-matrix-list: $(PY)
	$(PY) -m ci.cli matrix list --history $(HISTORY)
