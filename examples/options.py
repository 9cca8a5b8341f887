"""Connecting with options, in both styles: the Lua spec's options table, and keywords.

    python examples/options.py [ws://host/path]
"""

import sys

import wsfast

try:
    import local_server
except ImportError:
    from examples import local_server

url = sys.argv[1] if len(sys.argv) > 1 else local_server.start() + "/echo"
token = "secret-token"

# Lua style: one options table
client = wsfast.connect(url, {
    "headers": {"Authorization": "Bearer " + token},
    "dial_timeout": "10s",
    "read_timeout": "30s",
    "compression": wsfast.COMPRESSION.CONTEXT_TAKEOVER,
})
print("negotiated extensions:", client.extensions)
client.close()

# Python style: the same names as keywords
with wsfast.connect(url, headers=[("Authorization", "Bearer " + token)], dial_timeout=10_000,
                    compression=wsfast.COMPRESSION.NO_CONTEXT, channel_capacity=1024) as client:
    client.send('{"type": "subscribe", "channel": "orders"}')
    msg, ok = client.channel().receive()
    print("echo:", msg.data)

# A bad option is an error before anything touches the network
try:
    wsfast.connect(url, read_limit=-1)
except wsfast.InvalidOption as err:
    print("rejected:", err)
