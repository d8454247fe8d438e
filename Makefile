# The two commands a newcomer needs:
#   make run    runs Incoming!! with local storage in var/storage, and
#               example 2 beside it on http://127.0.0.1:8080
#   make test   installs what the tests need and runs them
# Both set up the virtualenv in .venv on first use.

VENV := .venv
BIN := $(VENV)/bin
RUN_ARGS ?=

.PHONY: run test system-deps clean

$(BIN)/python:
	python3 -m venv $(VENV)

$(VENV)/.run-installed: setup.py | $(BIN)/python
	$(BIN)/pip install --quiet --editable . --config-settings editable_mode=compat
	touch $@

$(VENV)/.test-installed: setup.py | $(BIN)/python
	$(BIN)/pip install --quiet --editable '.[test]' --config-settings editable_mode=compat
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	./scripts/run $(RUN_ARGS)

system-deps:
	./scripts/install-system-deps

# The JavaScript tus clients the tests drive (pinned in tests/package-lock.json).
tests/node_modules/.installed: tests/package.json tests/package-lock.json | system-deps
	npm ci --prefix tests --no-audit --no-fund --loglevel=error
	touch $@

test: system-deps $(VENV)/.test-installed tests/node_modules/.installed
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var build *.egg-info
