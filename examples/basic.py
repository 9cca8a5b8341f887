"""Basic connect, send, receive and close (the Lua spec's first examples).

    python examples/basic.py [ws://host/path]
"""

import sys

import wsfast

try:
    import local_server
except ImportError:  # run from elsewhere
    from examples import local_server

url = sys.argv[1] if len(sys.argv) > 1 else local_server.start() + "/echo"

try:
    client = wsfast.connect(url)
except wsfast.Error as err:
    sys.exit(f"connect failed: {err} (kind {err.kind}, retryable {err.retryable})")

client.send("Hello, Server!")
client.send(b"\x00\x01\x02", wsfast.BINARY)
client.ping()

ch = client.channel()
for _ in range(2):
    msg, ok = ch.receive()
    if not ok:
        break
    print("Type:", msg.type)
    print("Data:", msg.data)

client.close(wsfast.CLOSE_CODES.NORMAL, "Session ended")
print("closed with", client.close_code)
