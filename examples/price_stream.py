"""The Lua spec's price stream with keep-alive: select over the messages and a timer.

    python examples/price_stream.py [ws://host/prices]
"""

import json
import sys

import wsfast

try:
    import local_server
except ImportError:
    from examples import local_server

url = sys.argv[1] if len(sys.argv) > 1 else local_server.start() + "/prices"
prices = {}


def update_price(symbol, value):
    prices[symbol] = value
    print(f"{symbol:8} {value:>10.2f}")


client = wsfast.connect(url)
client.send(json.dumps({"action": "subscribe", "symbols": ["BTC-USD", "ETH-USD"]}))

ch = client.channel()
heartbeat = wsfast.after("500ms")   # the Lua example uses 30s; short here to show it firing
pings = 0
while True:
    r = wsfast.select(ch.case_receive(), heartbeat.case_receive())
    if r.channel is heartbeat:
        client.ping()               # keep-alive
        pings += 1
        heartbeat = wsfast.after("500ms")
    elif not r.ok:
        break                       # connection closed
    else:
        price = json.loads(r.value.data)
        update_price(price["symbol"], price["value"])

print(f"stream ended ({client.close_code} {client.close_reason!r}); sent {pings} keep-alive pings")
