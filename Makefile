# The two set-up commands of the README:
#   make train   install into .venv (once) and run the stocks pipeline on the bundled data
#   make test    install into .venv (once), lint, build the docs and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.rnnpipe-installed

.PHONY: install train test lint docs bench ui clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	@echo "installing rnnpipe and its dependencies into $(VENV) (about 2 minutes the first time)"
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]" 2> $(VENV)/pip-install.log \
	  || { grep -v "is ignored: it is neither" $(VENV)/pip-install.log; exit 1; }
	@touch $(STAMP)

train: install
	$(BIN)/rnnpipe train stocks

# two pytest workers (pytest-xdist), a test file each at a time: the suite waits on servers,
# scheduled runs and subprocesses much of the time (two workers on 2 cores: 9-12 min for
# 390 tests, 2026-12-07)
test: install lint docs
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site  # (no end-of-life banner)

bench: install
	$(BIN)/python bench/bench_forecast.py

ui: install
	$(BIN)/rnnpipe ui

clean:
	rm -rf $(VENV) .prefect .rnnpipe build *.egg-info
