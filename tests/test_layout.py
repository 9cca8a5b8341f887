"""The layering rules of issue 10, checked on the source: front ends never write a
Protocol field, the public client does no socket, TLS or HTTP work, and channels know
nothing of WebSockets."""

from __future__ import annotations

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "wsfast"


def _tree(name: str) -> ast.Module:
    return ast.parse((SRC / name).read_text(encoding="utf-8"))


def _imports(tree: ast.Module) -> set:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(("." * node.level) + (node.module or ""))
    return names


# the names the front ends give a Protocol: ``proto`` and ``self._proto``
_PROTOCOL_NAMES = {"proto", "_proto"}


@pytest.mark.parametrize("module", ["engine.py", "client.py", "asyncio/engine.py", "asyncio/client.py"])
def test_front_ends_never_write_a_protocol_field(module):
    tree = _tree(module)
    offenders = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Attribute):
                    owner = sub.value
                    owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                    if owner_name in _PROTOCOL_NAMES:
                        offenders.append(f"{module}:{sub.lineno} writes {owner_name}.{sub.attr}")
    assert not offenders, offenders


def test_the_public_client_does_no_socket_tls_or_http_work():
    imported = _imports(_tree("client.py"))
    forbidden = {"socket", "ssl", "select", "selectors", "threading", "mmap"}
    assert not imported & forbidden, imported & forbidden
    # of the handshake only the redirect decisions (DESIGN §6), no HTTP parsing
    for node in ast.walk(_tree("client.py")):
        if isinstance(node, ast.ImportFrom) and node.module == "handshake":
            assert [a.name for a in node.names] == ["Redirects"], ast.dump(node)
        if isinstance(node, ast.Import):
            assert not any("handshake" in a.name for a in node.names)


def test_channels_know_nothing_of_websockets():
    imported = _imports(_tree("channels.py"))
    allowed_local = {".errors", ".options"}
    local = {name for name in imported if name.startswith(".")}
    assert local <= allowed_local, local - allowed_local


def test_no_module_uses_private_channel_members_outside_channels():
    # both front ends' modules (a channels module uses its own channels' members)
    for path in SRC.glob("**/*.py"):
        if path.name == "channels.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in (
                    "_buf", "_recvq", "_sendq", "_receivers", "_senders", "_refused", "_source", "_lock",
                    "_give_back"):
                owner = node.value
                if isinstance(owner, ast.Attribute) and owner.attr == "channel" or \
                        getattr(owner, "id", None) in ("ch", "channel"):
                    pytest.fail(f"{path.name}:{node.lineno} uses channel.{node.attr}")
