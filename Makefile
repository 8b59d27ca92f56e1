# Everything a newcomer needs: `make demo` runs the main job, `make test` runs lint, types and tests.
# Both create the virtualenv on first use, from the lock files in requirements/ (uv pip compile):
# `make demo` installs the core and the demo's extra only; `make venv` everything the tests need.
# After editing dependencies in pyproject.toml, run `make lock` and commit requirements/.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
# uv from PATH when there is one, else bootstrapped into the virtualenv by pip.
UV ?= $(or $(shell command -v uv 2>/dev/null),$(BIN)/uv)
LOCK_FLAGS := --quiet --python-version 3.11 --generate-hashes

.PHONY: venv demo eval test lint typecheck pytest bench lock clean

$(PY):
	python3 -m venv $(VENV)

$(BIN)/uv: | $(PY)
	@echo "bootstrapping uv $(UV_VERSION) into $(VENV)"
	$(PY) -m pip install --disable-pip-version-check --progress-bar on 'uv==$(UV_VERSION)'

# The lock pins every version (and hash); `-e '.[EXTRA]'` beside it adds a dependency that was
# added to pyproject.toml but not yet locked, so a merge never leaves the venv short.
$(VENV)/.installed-demo: pyproject.toml requirements/demo.txt | $(PY) $(UV)
	$(UV) pip install --python $(PY) -r requirements/demo.txt -e '.[demo]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml requirements/dev.txt | $(PY) $(UV)
	$(UV) pip install --python $(PY) -r requirements/dev.txt -e '.[dev]'
	touch $@

venv: $(VENV)/.installed-dev

demo: $(VENV)/.installed-demo
	$(BIN)/lightfence demo

eval: venv
	$(BIN)/lightfence eval --report reports/eval

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: venv
	$(BIN)/mypy

# -rs: say why each skipped test was skipped (a missing service must not pass silently).
pytest: venv
	$(BIN)/pytest -n 2 -rs

test: lint typecheck pytest

bench: venv
	$(PY) -m bench

lock: | $(UV)
	$(UV) pip compile $(LOCK_FLAGS) pyproject.toml -o requirements/core.txt
	$(UV) pip compile $(LOCK_FLAGS) pyproject.toml --extra demo -o requirements/demo.txt
	$(UV) pip compile $(LOCK_FLAGS) pyproject.toml --extra dev -o requirements/dev.txt
	# The verifier image's lock (deploy/Dockerfile): the dev lock's versions, verifier + postgres.
	$(UV) pip compile $(LOCK_FLAGS) pyproject.toml --extra postgres -c requirements/dev.txt -o requirements/postgres.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# NVIDIA's own verifier, for tests/test_attestation_crosscheck.py only. It pins old dependencies
# (cryptography 43, pyOpenSSL 24, ...), so it lives in its own venv, never in lightfence's.
NVVERIFIER_VENV ?= .venv-nvverifier
.PHONY: nvverifier-venv
nvverifier-venv:
	test -x $(NVVERIFIER_VENV)/bin/python || python3 -m venv $(NVVERIFIER_VENV)
	$(NVVERIFIER_VENV)/bin/pip install --quiet nv-local-gpu-verifier==2.7.3
