# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml tests/probe_plugin/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' ./tests/probe_plugin
	touch $(STAMP)

test: lint
	$(BIN)/python -m pytest -q

# ruff and mypy (rule sets chosen in pyproject.toml). The repository root is the `playbook`
# package, so mypy reads it through a link named `playbook` inside the venv.
TYPEROOT := $(VENV)/typecheck
lint: $(STAMP)
	$(BIN)/ruff check .
	mkdir -p $(TYPEROOT) && ln -sfn $(CURDIR) $(TYPEROOT)/playbook
	cd $(TYPEROOT) && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p playbook.runtime -p playbook.compiler -p playbook.fleet

DEMO_DB := demo/state.db

# The main job: an author checks the deployment example, rehearses every path of it (its
# scenarios, running nothing) and compiles it into one file; an operator runs that file with the
# machine's own Python (no virtual environment), then looks at the run.
demo: $(STAMP)
	mkdir -p demo
	$(BIN)/playbook validate examples/deploy.playbook.toml --var ENVIRONMENT=prod
	$(BIN)/playbook plan examples/deploy.playbook.toml --var ENVIRONMENT=prod
	$(BIN)/playbook test examples/deploy.playbook.toml --coverage --min-coverage 100
	$(BIN)/playbook compile examples/deploy.playbook.toml --test -o demo/deploy.pyz
	./demo/deploy.pyz run --var ENVIRONMENT=prod --auto-approve --state-path $(DEMO_DB) < /dev/null
	./demo/deploy.pyz show --last --state-path $(DEMO_DB)
	./demo/deploy.pyz report --last --html demo/report.html --state-path $(DEMO_DB)

bench: $(STAMP)
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) demo build *.egg-info
