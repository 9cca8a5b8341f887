"""The Lua spec's real-time chat example: join a room, handle messages until closed.

    python examples/chat.py [ws://host/chat]
"""

import json
import sys

import wsfast

try:
    import local_server
except ImportError:
    from examples import local_server


def connect_chat(url, room_id, on_message, token="demo-token"):
    client = wsfast.connect(url, {"headers": {"Authorization": "Bearer " + token}})
    # join the room
    client.send(json.dumps({"type": "join", "room": room_id}))
    # message loop: ends when the connection is closed
    ch = client.channel()
    while True:
        msg, ok = ch.receive()
        if not ok:
            break
        on_message(client, json.loads(msg.data))
    return client


def main():
    url = sys.argv[1] if len(sys.argv) > 1 else local_server.start() + "/chat"
    seen = []

    def on_message(client, event):
        print("event:", event)
        seen.append(event)
        if event.get("type") == "joined":
            client.send(json.dumps({"type": "say", "text": "hello, room"}))
        elif event.get("type") == "message":
            client.close()   # one round trip is enough for the demo

    client = connect_chat(url, "lobby", on_message)
    print(f"left the room after {len(seen)} events (close code {client.close_code})")


if __name__ == "__main__":
    main()
