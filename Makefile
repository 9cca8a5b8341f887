# Every target sets itself up: a fresh clone needs only python3 (3.9+; 3.10+ for the Autobahn run).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.wsfast-installed
DOCS_STAMP := $(VENV)/.wsfast-docs-tools
LINT_STAMP := $(VENV)/.wsfast-lint-tools

.PHONY: test test-fast test-deep test-asan fuzz soak leaks demo bench bench-e2e lint docs lint-workflows clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml setup.py wsfast/_codec.pyx wsfast/_zshim.h
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

# The property tests (codec; protocol once tests/test_protocol.py exists) with the "deep"
# hypothesis profile (tests/conftest.py: random seeds, 20x the examples, failures kept in
# .hypothesis/): on the compiled codec, then on the pure-Python one.
DEEP_TESTS := $(wildcard tests/test_codec.py tests/test_protocol.py)

test-deep: $(STAMP)
	$(PY) -c "import wsfast.codec as c; assert c.COMPILED, 'the compiled codec did not build'"
	WSFAST_HYPOTHESIS_PROFILE=deep $(PY) -m pytest $(DEEP_TESTS) -q
	WSFAST_HYPOTHESIS_PROFILE=deep WSFAST_PURE_PYTHON=1 $(PY) -m pytest $(DEEP_TESTS) -q

# Hardening (docs/reliability.md). Each target's recipe is owned by the script it runs.
# Coverage-guided fuzzing with atheris, each target for MINUTES (default 5) minutes.
fuzz: $(STAMP)
	$(PY) -m fuzz --minutes $(or $(MINUTES),5) $(ARGS)

# The extension built with AddressSanitizer and UndefinedBehaviorSanitizer, then the codec and
# protocol tests and a short fuzz run under it.
test-asan: $(STAMP)
	bash fuzz/asan.sh "$(PY)"

# wsfast.reconnecting through a fault-injecting relay for MINUTES (default 30) minutes.
soak: $(STAMP)
	$(PY) -m benchmarks.soak --minutes $(or $(MINUTES),30) $(ARGS)

# 10,000 connect/exchange/close cycles per scenario: fds, threads and RSS every 1,000.
leaks: $(STAMP)
	$(PY) -m benchmarks.leaks $(ARGS)

demo: $(STAMP)
	$(PY) -m wsfast demo

bench: $(STAMP)
	$(PY) -m pytest benchmarks -q --benchmark-only

# End to end against the peers (docs/performance.md); ARGS="--quick" for a short run.
bench-e2e: $(STAMP)
	$(PY) -m pip install -q picows aiohttp websocket-client uvloop orjson matplotlib
	$(PY) -m benchmarks.e2e --setup-py312 $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check wsfast tests benchmarks examples

# The documentation site (MkDocs) into site/. Also checks that docs/api.md covers every
# name in wsfast.__all__ (read from the source, so no build is needed).
$(DOCS_STAMP): $(PY)
	$(PY) -m pip install -q "mkdocs>=1.6,<2" "mkdocs-material>=9.5,<10"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(PY) -c "import ast, pathlib, re, sys; \
	tree = ast.parse(pathlib.Path('wsfast/__init__.py').read_text()); \
	names = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == '__all__'); \
	api = pathlib.Path('docs/api.md').read_text(); \
	missing = [n for n in names if not re.search('\x60' + re.escape(n) + '[\x60(]', api)]; \
	sys.exit('docs/api.md does not document: ' + ', '.join(missing) if missing else 0)"
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# The GitHub workflows against their JSON schema (shipped inside check-jsonschema), and yamllint.
$(LINT_STAMP): $(PY)
	$(PY) -m pip install -q "check-jsonschema>=0.28" "yamllint>=1.35"
	touch $(LINT_STAMP)

lint-workflows: $(LINT_STAMP)
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(VENV)/bin/yamllint -s -d "{extends: default, rules: {line-length: {max: 120}, document-start: disable, truthy: {check-keys: false}}}" .github/workflows mkdocs.yml

clean:
	rm -rf build dist *.egg-info wsfast/*.so wsfast/_codec.c .pytest_cache site
