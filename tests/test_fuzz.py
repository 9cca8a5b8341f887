"""The fuzz harness (fuzz/, docs/reliability.md) cannot rot: every target runs for a few
seconds through ``python -m fuzz`` (the same path as ``make fuzz``), every seed of the
checked-in corpora passes, and each target's checks do fire on a planted fault.

Skipped, with the reason, where atheris does not install (it has Linux x86-64 wheels
only; pyproject.toml's markers say which version for which Python).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

atheris = pytest.importorskip("atheris", reason="atheris is not installed (Linux x86-64 wheels only)")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:   # the fuzz package lives at the top of the checkout
    sys.path.insert(0, str(ROOT))

import fuzz  # noqa: E402
from fuzz import frames, http, options, seeds, urls  # noqa: E402

MODULES = {"frames": frames, "http": http, "urls": urls, "options": options}

pytestmark = pytest.mark.hardening   # (make test runs it; make test-fast does not)


def run_fuzz(tmp_path, *args, timeout=170):
    return subprocess.run([sys.executable, "-m", "fuzz", "--out", str(tmp_path), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(180)   # about 15 s on an idle machine; the limit is for a loaded one
def test_every_target_runs_for_a_few_seconds(tmp_path):
    # one process per target, 2 s each, two at a time, the compiled codec uninstrumented (no clang build
    # here: test_instrumented_build does that, marked slow)
    proc = run_fuzz(tmp_path, "--seconds", "2", "--native", "off", "--jobs", "2")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert set(summary["targets"]) == set(fuzz.TARGETS)
    for name, figures in summary["targets"].items():
        assert figures["returncode"] == 0 and not figures["findings"], (name, figures)
        assert figures["executions"] > 50, (name, figures)
        assert figures["coverage"] > 20, (name, figures)
    assert "Python coverage only" in summary["native"]


@pytest.mark.parametrize("name", fuzz.TARGETS)
def test_the_checked_in_seeds_pass_and_are_small(name):
    corpus = ROOT / "fuzz" / "corpus" / name
    files = sorted(corpus.iterdir())
    assert files and sum(f.stat().st_size for f in files) < 16 * 1024
    for f in files:
        MODULES[name].one_input(f.read_bytes())


def test_the_seeds_are_what_fuzz_seeds_writes():
    # by name (the deflated seeds' bytes depend on the zlib build, so not byte for byte)
    for name, made in (("frames", seeds.frames_seeds()), ("http", seeds.http_seeds()),
                       ("urls", seeds.urls_seeds()), ("options", seeds.options_seeds())):
        on_disk = {f.name for f in (ROOT / "fuzz" / "corpus" / name).iterdir()}
        assert on_disk == set(made), name


# ---------------------------------------------------------------------- the checks fire

def test_frames_finds_a_path_that_disagrees(monkeypatch):
    # the pure-Python twin reports another close code for an invalid close code
    seed = (ROOT / "fuzz" / "corpus" / "frames" / "rfc-9").read_bytes()   # close code 1005 sent
    frames.one_input(seed)
    real = frames._codec_py._fail
    monkeypatch.setattr(frames._codec_py, "_fail", lambda message, code=1002: real(message, 1011))
    if frames._codec_c is None:
        pytest.skip("one path only: the compiled codec is not built")
    with pytest.raises(frames.Finding, match="disagree"):
        frames.one_input(seed)


def test_frames_finds_a_message_over_the_read_limit(monkeypatch):
    seed = (ROOT / "fuzz" / "corpus" / "frames" / "limit-125").read_bytes()
    monkeypatch.setattr(frames, "VARIANTS", frames.VARIANTS[:1])
    monkeypatch.setattr(frames._codec_py.FrameParser, "_check_length", lambda *a: None)
    with pytest.raises(frames.Finding, match="over the read limit"):
        frames.one_input(seed)


def test_frames_lets_an_untyped_exception_through(monkeypatch):
    def boom(self, *a):
        raise KeyError("planted")
    monkeypatch.setattr(frames._codec_py.FrameParser, "_control", boom)
    with pytest.raises(KeyError):
        frames.one_input((ROOT / "fuzz" / "corpus" / "frames" / "rfc-2").read_bytes())


def test_http_finds_split_dependence(monkeypatch):
    seed = (ROOT / "fuzz" / "corpus" / "http" / "101-lf").read_bytes()   # fed in 3 chunks
    real = http.handshake.ResponseParser.feed
    calls = []

    def feed(self, data):
        calls.append(1)
        if len(calls) == 2:
            data = data[:-1]   # loses a byte when fed in pieces
        return real(self, data)
    monkeypatch.setattr(http.handshake.ResponseParser, "feed", feed)
    with pytest.raises(http.Finding):
        http.one_input(seed)


def test_urls_finds_a_normalisation_that_is_not_idempotent(monkeypatch):
    real = urls.policy._normalise_path
    monkeypatch.setattr(urls.policy, "_normalise_path", lambda url, path: real(url, path) + "x")
    with pytest.raises(urls.Finding, match="normalising twice"):
        urls.one_input(b"wss://example.com/a")


def test_options_finds_a_duration_off_the_reference(monkeypatch):
    real = options.parse_duration
    monkeypatch.setattr(options, "parse_duration",
                        lambda v, n: (real(v, n) or 0) * 1.5 or None)
    with pytest.raises(options.Finding, match="reference"):
        options.one_input(b"1m30s")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(shutil.which("clang") is None, reason="no clang: the extension cannot be instrumented")
def test_instrumented_build(tmp_path):
    # clang + fuzzer-no-link + ASan, loaded by the runner: libFuzzer sees the C counters
    proc = run_fuzz(tmp_path, "--seconds", "3", "--native", "on", "--targets", "frames", timeout=280)
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = (tmp_path / "logs" / "frames.log").read_text()
    assert "inline 8-bit counters" in log and "native-" in log
