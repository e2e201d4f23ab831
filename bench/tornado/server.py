"""The Tornado baseline for the bench scripts, the same routes as
examples/limits: GET /hello, GET /sleep?ms=N (`await asyncio.sleep`, the
Tornado way to suspend a request) and GET /spin?ms=N (a busy loop, like the
blocking bcrypt call in Tornado's docs); and the websocket /echo, which sends
every message back, like examples/echo. With a store, POST /count/NAME
increments a counter and answers its value, like examples/counter: in
SQLite (WAL mode, synchronous=NORMAL, as cyclone's store) through a
one-thread pool, the way Tornado's docs say to keep blocking calls off the
event loop (one thread: SQLite takes one writer at a time), or in a Redis
hash with redis-py's asyncio client. With upstreams, GET /aggregate
fetches them all at once with Tornado's AsyncHTTPClient and answers a JSON
summary, like examples/aggregator.

Usage: python3 server.py PORT [--sqlite FILE | --redis URL] [--upstreams URL,URL...]
"""

import asyncio
import concurrent.futures
import json
import resource
import sqlite3
import sys
import threading
import time

import tornado.httpclient
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


class SqliteCounter(tornado.web.RequestHandler):
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    local = threading.local()
    path = None

    @classmethod
    def increment(cls, name):
        db = getattr(cls.local, "db", None)
        if db is None:
            db = cls.local.db = sqlite3.connect(cls.path)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        with db:
            (value,) = db.execute(
                "INSERT INTO kv (key, value) VALUES (?, '1') ON CONFLICT (key) "
                "DO UPDATE SET value = CAST(value AS INTEGER) + 1 RETURNING value",
                (name,),
            ).fetchone()
        return value

    async def post(self, name):
        loop = asyncio.get_running_loop()
        value = await loop.run_in_executor(self.pool, self.increment, name)
        self.write(str(value))


class RedisCounter(tornado.web.RequestHandler):
    client = None

    async def post(self, name):
        value = await self.client.hincrby("tornado:count", name, 1)
        self.write(str(value))


class AggregateHandler(tornado.web.RequestHandler):
    upstreams = []

    async def get(self):
        client = tornado.httpclient.AsyncHTTPClient()
        started = time.monotonic()

        async def one(url):
            begun = time.monotonic()
            try:
                response = await client.fetch(url, request_timeout=5)
                outcome = {"url": url, "status": response.code, "bytes": len(response.body)}
            except Exception as e:
                outcome = {"url": url, "error": str(e)}
            outcome["elapsed_ms"] = int((time.monotonic() - begun) * 1000)
            return outcome

        results = await asyncio.gather(*(one(url) for url in self.upstreams))
        self.set_header("content-type", "application/json")
        self.write(json.dumps({"elapsed_ms": int((time.monotonic() - started) * 1000), "results": results}))


class EchoSocket(tornado.websocket.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))


async def main(port, store):
    if "--upstreams" in store:
        at = store.index("--upstreams")
        AggregateHandler.upstreams = store[at + 1].split(",")
        store = store[:at] + store[at + 2 :]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    routes = [
        (r"/hello", HelloHandler),
        (r"/sleep", SleepHandler),
        (r"/spin", SpinHandler),
        (r"/echo", EchoSocket),
        (r"/aggregate", AggregateHandler),
    ]
    if store[:1] == ["--sqlite"]:
        SqliteCounter.path = store[1]
        routes.append((r"/count/(.*)", SqliteCounter))
    elif store[:1] == ["--redis"]:
        import redis.asyncio

        RedisCounter.client = redis.asyncio.Redis.from_url(store[1])
        routes.append((r"/count/(.*)", RedisCounter))
    app = tornado.web.Application(routes)
    app.listen(port, address="127.0.0.1", backlog=16384)
    print(f"tornado listening on http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2:]))
