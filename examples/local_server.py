"""A small local server for the examples: echo, a chat room and a price stream.

Run it alone (``python examples/local_server.py``) or let an example start it in a
thread when no URL is given. Uses the ``websockets`` library (``pip install websockets``).
"""

from __future__ import annotations

import json
import random
import threading
import time

from websockets.sync.server import serve

_rooms: dict = {}
_rooms_lock = threading.Lock()


def _echo(ws) -> None:
    for message in ws:
        ws.send(message)


def _chat(ws) -> None:
    room = None
    try:
        for raw in ws:
            event = json.loads(raw)
            if event.get("type") == "join":
                room = event["room"]
                with _rooms_lock:
                    _rooms.setdefault(room, set()).add(ws)
                ws.send(json.dumps({"type": "joined", "room": room}))
            elif room is not None:
                with _rooms_lock:
                    members = list(_rooms.get(room, ()))
                for member in members:
                    member.send(json.dumps({"type": "message", "room": room, "text": event.get("text")}))
    finally:
        if room is not None:
            with _rooms_lock:
                _rooms.get(room, set()).discard(ws)


_sessions = [0]   # price sessions so far: the first one is cut short by a "restart"


def _prices(ws) -> None:
    with _rooms_lock:
        _sessions[0] += 1
        session = _sessions[0]
    request = json.loads(ws.recv())
    symbols = request.get("symbols") or ["BTC-USD"]
    prices = {s: 100.0 + 10 * i for i, s in enumerate(symbols)}
    seq = 0
    count = int(request.get("count", 50))
    for n in range(count):
        if session == 1 and n == count // 2:
            ws.close(1012, "service restart")   # what an exchange does on a deploy
            return
        symbol = random.choice(symbols)
        prices[symbol] *= 1 + random.uniform(-0.001, 0.001)
        seq += 1
        ws.send(json.dumps({"symbol": symbol, "value": round(prices[symbol], 2), "seq": seq}))
        time.sleep(0.02)
    ws.close(1000, "end of stream")


def _route(ws) -> None:
    path = ws.request.path
    if path.startswith("/chat"):
        _chat(ws)
    elif path.startswith("/prices"):
        _prices(ws)
    else:
        _echo(ws)


def start(port: int = 0) -> str:
    """Start the server in a daemon thread; return its ws:// base URL."""
    server = serve(_route, "127.0.0.1", port, compression="deflate")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"ws://127.0.0.1:{server.socket.getsockname()[1]}"


if __name__ == "__main__":
    print("serving on", start(8765), "(Ctrl-C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
