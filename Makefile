# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench clean

$(STAMP): pyproject.toml tests/probe_plugin/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' ./tests/probe_plugin
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

DEMO_DB := demo/state.db

# The main job: an author checks and compiles the deployment example into one file; an operator
# runs that file with the machine's own Python (no virtual environment), then looks at the run.
demo: $(STAMP)
	mkdir -p demo
	$(BIN)/playbook validate examples/deploy.playbook.toml --var ENVIRONMENT=prod
	$(BIN)/playbook plan examples/deploy.playbook.toml --var ENVIRONMENT=prod
	$(BIN)/playbook compile examples/deploy.playbook.toml -o demo/deploy.pyz
	./demo/deploy.pyz run --var ENVIRONMENT=prod --auto-approve --state-path $(DEMO_DB) < /dev/null
	./demo/deploy.pyz show --last --state-path $(DEMO_DB)
	./demo/deploy.pyz report --last --html demo/report.html --state-path $(DEMO_DB)

bench: $(STAMP)
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) demo build *.egg-info
