"""Coverage-guided fuzzing of wsfast's parsers with atheris (docs/reliability.md).

``python -m fuzz --minutes N`` (``make fuzz``) runs every target for N minutes; each
target is a module of this package with a ``one_input(data: bytes)`` function:

* :mod:`fuzz.frames`: the frame parser, differential: the compiled codec (zlib's C API
  and Python's zlib) against the pure-Python twin on the same bytes cut at the same
  points; permessage-deflate on and off, with and without context takeover, small
  read limits;
* :mod:`fuzz.http`: the handshake's HTTP response parser and checks, the proxy's
  CONNECT answer, redirect Locations, the Protocol through its handshake;
* :mod:`fuzz.urls`: URL normalisation and the policy match, proxy URLs and no_proxy;
* :mod:`fuzz.options`: Go durations (against a reference parser) and option parsing.

A typed error (a ``wsfast.Error``) is a fine outcome; any other exception, a
disagreement, a hang or unbounded memory is a finding.
"""

TARGETS = ("frames", "http", "urls", "options")
# The targets that run the compiled codec (http through the Protocol): only these get the
# instrumented extension and the ASan runtime, which slows Python itself down 20-50 times.
NATIVE_TARGETS = ("frames", "http")
