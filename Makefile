# Every target sets itself up: a fresh clone needs only python3 (3.9+; 3.10+ for the Autobahn run).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.wsfast-installed
DOCS_STAMP := $(VENV)/.wsfast-docs-tools
LINT_STAMP := $(VENV)/.wsfast-lint-tools

.PHONY: test test-fast test-deep test-asan fuzz soak leaks demo bench bench-e2e bench-roundtrip lint docs lint-workflows clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml setup.py wsfast/_codec.pyx wsfast/_zshim.h wsfast/asyncio/_chaniter.pyx
	$(PY) -m pip install -q -e ".[test,bench]"
	touch $(STAMP)

# The whole suite on the compiled codec, then again on the pure-Python codec (without the
# slow tests). The slow ones (the long Autobahn groups of each front end, ...) run on two
# pytest-xdist workers, one per front end's Autobahn group: side by side on two cores.
test: $(STAMP)
	$(PY) -c "import wsfast.codec as c; assert c.COMPILED, 'the compiled codec did not build'"
	$(PY) -m pytest tests -q -m "not slow"
	$(PY) -m pytest tests -q -m slow -n 2 --dist loadgroup
	WSFAST_PURE_PYTHON=1 $(PY) -m pytest tests -q -m "not slow"

# Everyday run: skips the tests marked slow (the long Autobahn groups, the 100,000-message
# cancellation runs, ...), the asyncio runs of the sync tests (asyncio_twin; the asyncio
# front end's own tests stay), the uvloop runs of the long asyncio tests (loop_twin: their
# default-loop runs stay) and the short fuzz, leak and soak runs (hardening), and draws a
# quarter of the property tests' examples.
test-fast: $(STAMP)
	WSFAST_HYPOTHESIS_PROFILE=$${WSFAST_HYPOTHESIS_PROFILE:-fast} $(PY) -m pytest tests -q \
	    -m "not slow and not asyncio_twin and not loop_twin and not hardening"

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

# A client's own CPU per request/response round trip, the peer in its process
# (websocket-rs too once `make bench-e2e` has built build/bench-venv312).
bench-roundtrip: $(STAMP)
	$(PY) -m pip install -q websocket-client
	$(PY) -m benchmarks.roundtrip $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check wsfast tests benchmarks examples

# The documentation site (MkDocs) into site/. The API reference (docs/api*.md) is generated
# from the docstrings by mkdocstrings; first a check that every name of wsfast.__all__ and
# wsfast.asyncio.__all__ has a "::: name" directive there, or is a member of a module's
# directive ("::: wsfast.errors" covers wsfast.Error): griffe, the loader mkdocstrings uses,
# resolves each export to the object it names, so a re-export counts as its target (griffelib
# is the package that provides "import griffe"). The Makefile is a prerequisite so a changed
# pin reaches an existing .venv. (ruff: mkdocstrings formats the signatures with it.)
$(DOCS_STAMP): $(PY) Makefile
	$(PY) -m pip install -q "mkdocs>=1.6,<2" "mkdocs-material>=9.5,<10" \
	    "mkdocstrings>=1.0.8,<2" "mkdocstrings-python>=2.0.11,<3" "griffelib>=2.4,<3" "ruff>=0.5"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(PY) -c "import pathlib, re, sys, textwrap, griffe, yaml; \
	pages = sorted(pathlib.Path('docs').glob('api*.md')); \
	blocks = [m for p in pages for m in re.findall(r'^:::[ \t]*(\S+)[ \t]*\n((?:[ \t]+\S.*\n)*)', p.read_text(), re.M)]; \
	found = {d: ((yaml.safe_load(textwrap.dedent(o)) or {}).get('options') or {}).get('members', True) for d, o in blocks}; \
	pkg = griffe.load('wsfast', search_paths=['.'], resolve_aliases=True, resolve_external=False); \
	mods = [pkg, pkg['asyncio']]; \
	bad = [m.path for m in mods if m.exports is None]; \
	paths = lambda m, n: {m.path + '.' + n, m[n].final_target.path if m[n].is_alias else m[n].path}; \
	covers = lambda d, p: d == p or (p.startswith(d + '.') and '.' not in p[len(d) + 1:] and (found[d] is True or (found[d] is not False and p[len(d) + 1:] in found[d]))); \
	missing = [m.path + '.' + n for m in mods for n in map(str, m.exports or ()) if not any(covers(d, p) for d in found for p in paths(m, n))]; \
	print('docs/api*.md: %d directives cover %d exported names' % (len(found), sum(len(m.exports or ()) for m in mods))) if not (bad or missing) else None; \
	sys.exit('no __all__ in: ' + ', '.join(bad) if bad else 'no ::: directive in docs/api*.md for: ' + ', '.join(missing) if missing else 0)"
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
