"""The Tornado baseline for the chat benchmarks: Tornado's websocket chat
demo (demos/websocket/chatdemo.py), with the routes of examples/chat. Each
open /chatsocket is a WebSocketHandler kept in a set of waiters and first
sent the kept messages; POST /a/message/new (form field `body`) numbers the
message, keeps the last 200 and writes its JSON to every waiter. GET /
answers, so a script can tell the server is up.

Usage: python3 chat.py PORT
"""

import asyncio
import json
import resource
import sys

import tornado.web
import tornado.websocket


class Room:
    waiters = set()
    cache = []
    cache_size = 200
    last_id = 0


class Page(tornado.web.RequestHandler):
    def get(self):
        self.write("chat")


class NewMessage(tornado.web.RequestHandler):
    def post(self):
        Room.last_id += 1
        message = {"id": Room.last_id, "body": self.get_argument("body")}
        Room.cache.append(message)
        del Room.cache[: -Room.cache_size]
        text = json.dumps(message)
        for waiter in Room.waiters:
            try:
                waiter.write_message(text)
            except tornado.websocket.WebSocketClosedError:
                pass
        self.write(message)


class ChatSocket(tornado.websocket.WebSocketHandler):
    def open(self):
        Room.waiters.add(self)
        for message in Room.cache:
            self.write_message(json.dumps(message))

    def on_close(self):
        Room.waiters.discard(self)


async def main(port):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    app = tornado.web.Application(
        [(r"/", Page), (r"/a/message/new", NewMessage), (r"/chatsocket", ChatSocket)]
    )
    app.listen(port, address="127.0.0.1", backlog=16384)
    print(f"tornado listening on http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
