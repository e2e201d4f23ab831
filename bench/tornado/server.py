"""The Tornado baseline for the bench scripts, the same routes as
examples/limits: GET /hello, GET /sleep?ms=N (`await asyncio.sleep`, the
Tornado way to suspend a request) and GET /spin?ms=N (a busy loop, like the
blocking bcrypt call in Tornado's docs); and the websocket /echo, which sends
every message back, like examples/echo.

Usage: python3 server.py PORT
"""

import asyncio
import resource
import sys
import time

import tornado.web
import tornado.websocket


class HelloHandler(tornado.web.RequestHandler):
    def get(self):
        self.write("hello\n")


class SleepHandler(tornado.web.RequestHandler):
    async def get(self):
        ms = int(self.get_argument("ms"))
        await asyncio.sleep(ms / 1000)
        self.write(f"slept {ms} ms\n")


class SpinHandler(tornado.web.RequestHandler):
    def get(self):
        ms = int(self.get_argument("ms"))
        end = time.monotonic() + ms / 1000
        x = 1
        while time.monotonic() < end:
            x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        self.write(f"spun {ms} ms\n")


class EchoSocket(tornado.websocket.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))


async def main(port):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    app = tornado.web.Application(
        [
            (r"/hello", HelloHandler),
            (r"/sleep", SleepHandler),
            (r"/spin", SpinHandler),
            (r"/echo", EchoSocket),
        ]
    )
    app.listen(port, address="127.0.0.1", backlog=16384)
    print(f"tornado listening on http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
