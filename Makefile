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
