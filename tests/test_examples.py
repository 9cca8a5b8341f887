"""The examples in examples/ run to completion against their local server."""

import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["basic", "options", "chat", "price_stream", "price_stream_async"])
def test_example_runs(name):
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py")], cwd=EXAMPLES,
                          capture_output=True, text=True, timeout=50, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip(), "the example printed nothing"
    if name == "price_stream":   # the local server restarts the stream once: it reconnects
        assert "connection 1 ended: 1012 'service restart'" in proc.stdout, proc.stdout
        assert "connection 2: subscribing" in proc.stdout, proc.stdout
        assert "stream ended after 2 connections" in proc.stdout, proc.stdout
    if name == "price_stream_async":   # one feed is restarted and resubscribes; both end
        out = proc.stdout
        assert out.count("connection 1 ended: 1012 'service restart'") == 1, out
        assert out.count("connection 2: subscribing") == 1, out
        assert "majors: feed done" in out and "alts: feed done" in out, out
        assert "heartbeat:" in out, out
        assert "all feeds ended" in out, out
