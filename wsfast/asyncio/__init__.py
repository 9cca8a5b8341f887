"""wsfast for asyncio (DESIGN §7): for now the channels, ``select`` and ``after`` of one
event loop; the asyncio WebSocket client comes next (issue 12).

Inside this package ``import asyncio`` is the standard library (absolute imports); no
module here is named ``asyncio.py``.
"""

from __future__ import annotations

from .channels import Channel, Selected, after, select

__all__ = ["Channel", "Selected", "select", "after"]
