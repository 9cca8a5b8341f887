# Every target sets itself up: a fresh clone needs only python3 (3.9+; 3.10+ for the Autobahn run).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.wsfast-installed

.PHONY: test test-fast demo bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml setup.py wsfast/_codec.pyx
	$(PY) -m pip install -q -e ".[test,bench]"
	touch $(STAMP)

# The whole suite on the compiled codec, then again on the pure-Python codec.
test: $(STAMP)
	$(PY) -c "import wsfast.codec as c; assert c.COMPILED, 'the compiled codec did not build'"
	$(PY) -m pytest tests -q
	WSFAST_PURE_PYTHON=1 $(PY) -m pytest tests -q -m "not slow"

# Everyday run: skips the long Autobahn compression cases.
test-fast: $(STAMP)
	$(PY) -m pytest tests -q -m "not slow"

demo: $(STAMP)
	$(PY) -m wsfast demo

bench: $(STAMP)
	$(PY) -m pytest benchmarks -q --benchmark-only

lint: $(STAMP)
	$(PY) -m ruff check wsfast tests benchmarks examples

clean:
	rm -rf build dist *.egg-info wsfast/*.so wsfast/_codec.c .pytest_cache
