"""The price stream on wsfast.asyncio: several connections, one select, a heartbeat.

    python examples/price_stream_async.py [ws://host/prices]

Each feed is a task that keeps one stream alive with ``wsfast.asyncio.reconnecting``:
on every connection it subscribes anew and forwards the prices into a channel of its
own, a channel that outlives the connections. The main task selects over the feeds'
channels and a heartbeat timer (``after``), as the Lua example's loop does with its
channels. The local server restarts the first stream once (close 1012): that feed
reconnects and resubscribes while the others go on. A feed ends, and closes its channel,
when the server ends its stream with 1000.
"""

import asyncio
import json
import sys

import wsfast
import wsfast.asyncio as wsa

try:
    import local_server
except ImportError:
    from examples import local_server

FEEDS = {"majors": ["BTC-USD", "ETH-USD"], "alts": ["SOL-USD", "ADA-USD"]}


async def feed(name: str, url: str, symbols: list, out: wsa.Channel) -> None:
    """Keep one stream alive; send its prices into ``out``; close ``out`` at the end."""
    subscribe = json.dumps({"action": "subscribe", "symbols": symbols})
    try:
        async with wsa.reconnecting(url, ping_interval="5s", ping_timeout="5s",
                                    backoff_min="100ms") as stream:
            number = 0
            async for client in stream:
                number += 1
                print(f"{name}: connection {number}: subscribing")
                await client.send(subscribe)
                async for message in client.channel():
                    await out.send((name, json.loads(message.data)))   # waits if main is slow
                print(f"{name}: connection {number} ended: "
                      f"{client.close_code} {client.close_reason!r}")
                if client.close_code == wsfast.CLOSE_CODES.NORMAL:
                    break                                # the server ended the stream
    finally:
        out.close()


async def main(url: str) -> None:
    channels = {name: wsa.Channel(64) for name in FEEDS}
    tasks = [asyncio.create_task(feed(name, url, FEEDS[name], channels[name])) for name in FEEDS]
    prices: dict = {}
    live = dict(channels)
    heartbeat = wsa.after("500ms")
    while live:
        r = await wsa.select([ch.case_receive() for ch in live.values()] + [heartbeat.case_receive()])
        if r.channel is heartbeat:
            print(f"  heartbeat: {len(prices)} symbols, {len(live)} feeds live")
            heartbeat = wsa.after("500ms")
        elif not r.ok:                                   # a feed ended and closed its channel
            name = next(n for n, ch in live.items() if ch is r.channel)
            del live[name]
            print(f"{name}: feed done")
        else:
            name, price = r.value
            prices[price["symbol"]] = price["value"]
            print(f"{name:6} {price['symbol']:8} {price['value']:>10.2f}")
    await asyncio.gather(*tasks)                         # re-raises a feed's error, if any
    print(f"all feeds ended; last prices: {prices}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else local_server.start() + "/prices"))
