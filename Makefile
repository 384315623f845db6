# tradelab — every target sets itself up on a fresh machine (creates .venv, installs the package).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export MPLBACKEND := Agg

.PHONY: setup demo lab test bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)

## The main job end to end: simulator -> collector -> store -> profile printed and plotted.
demo: $(STAMP)
	$(BIN)/tradelab demo

## Open the notebooks in JupyterLab (added to .venv here, not a dependency of the package).
lab: $(STAMP)
	$(BIN)/jupyter-lab --version >/dev/null 2>&1 || $(BIN)/python -m pip install -q jupyterlab
	env -u MPLBACKEND $(BIN)/jupyter lab --notebook-dir=notebooks

## Every test, notebooks included (nbmake runs them on a real kernel).
test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbmake tests notebooks

## Benchmarks: print figures and ratios against a baseline measured in the same run.
bench: $(STAMP)
	$(BIN)/python -c 'import duckdb, pyarrow' 2>/dev/null || $(BIN)/python -m pip install -q -e '.[test,bench]'
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check tradelab tests bench
	$(BIN)/ruff format --check tradelab tests bench
	$(BIN)/mypy tradelab

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo-output
