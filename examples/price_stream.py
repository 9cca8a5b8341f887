"""The Lua spec's price stream, on wsfast.reconnecting: a stream that outlives its connections.

    python examples/price_stream.py [ws://host/prices]

Each connection subscribes anew (the server forgets a subscription with its
connection). The local server restarts the stream once (close 1012) half way; the loop
reconnects, resubscribes and goes on until the server ends the stream with 1000.
Keepalive is the client's: a ping after ``ping_interval`` of silence, and a connection
that answers nothing within ``ping_timeout`` is ended and dialled again.
"""

import json
import sys

import wsfast

try:
    import local_server
except ImportError:
    from examples import local_server

url = sys.argv[1] if len(sys.argv) > 1 else local_server.start() + "/prices"
subscribe = json.dumps({"action": "subscribe", "symbols": ["BTC-USD", "ETH-USD"]})
prices = {}


def update_price(symbol, value):
    prices[symbol] = value
    print(f"{symbol:8} {value:>10.2f}")


with wsfast.reconnecting(url, ping_interval="5s", ping_timeout="5s", backoff_min="100ms") as stream:
    for number, client in enumerate(stream, 1):
        print(f"connection {number}: subscribing")
        client.send(subscribe)
        ch = client.channel()
        report = wsfast.after("500ms")   # the Lua example's timer, here for a status line
        while True:
            r = wsfast.select(ch.case_receive(), report.case_receive())
            if r.channel is report:
                print(f"  ({len(prices)} symbols, latency {client.latency})")
                report = wsfast.after("500ms")
            elif not r.ok:
                break                    # this connection ended
            else:
                price = json.loads(r.value.data)
                update_price(price["symbol"], price["value"])
        print(f"connection {number} ended: {client.close_code} {client.close_reason!r}")
        if client.close_code == wsfast.CLOSE_CODES.NORMAL:
            break                        # the server ended the stream: done

print(f"stream ended after {number} connections; last prices: {prices}")
