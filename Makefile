# Everything a newcomer needs: `make demo` runs the main job, `make test` runs lint, types and tests.
# Both create the virtualenv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo eval test lint typecheck pytest bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: venv
	$(BIN)/lightfence demo

eval: venv
	$(BIN)/lightfence eval --report reports/eval

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/pytest -n 2

test: lint typecheck pytest

bench: venv
	$(PY) -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# NVIDIA's own verifier, for tests/test_attestation_crosscheck.py only. It pins old dependencies
# (cryptography 43, pyOpenSSL 24, ...), so it lives in its own venv, never in lightfence's.
NVVERIFIER_VENV ?= .venv-nvverifier
.PHONY: nvverifier-venv
nvverifier-venv:
	test -x $(NVVERIFIER_VENV)/bin/python || python3 -m venv $(NVVERIFIER_VENV)
	$(NVVERIFIER_VENV)/bin/pip install --quiet nv-local-gpu-verifier==2.7.3
