"""wsfast for asyncio (DESIGN §7): the same client in an event loop, on the same codec,
protocol, handshake, keepalive, redirect, proxy and backoff code as the sync client.

    async with wsfast.asyncio.connect(url) as client:
        await client.send("...")
        async for msg in client.channel(): ...

Inside this package ``import asyncio`` is the standard library (absolute imports); no
module here is named ``asyncio.py``.
"""

from __future__ import annotations

from .channels import Channel, Selected, after, select
from .client import Client, connect
from .reconnect import Reconnecting, reconnecting

__all__ = ["connect", "Client", "reconnecting", "Reconnecting", "Channel", "Selected", "select", "after"]
