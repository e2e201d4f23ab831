"""The Tornado baseline for examples/blog: Tornado's blog demo, its handlers,
forms and bcrypt calls, with SQLite (in the standard library) in place of its
PostgreSQL so that it needs no database server. Only the routes the bench
uses: GET / (the five latest entries), GET /entry/SLUG, GET and POST /compose,
POST /auth/create, GET and POST /auth/login.

--bcrypt loop hashes and checks passwords on the event loop (every other
request waits for them); --bcrypt pool does it as the demo does, with
`run_in_executor` on the default thread pool.

Usage: python3 blog.py PORT --db FILE [--bcrypt loop|pool]
"""

import argparse
import asyncio
import re
import sqlite3
import unicodedata

import bcrypt
import markdown
import tornado.ioloop
import tornado.template
import tornado.web

TEMPLATES = {
    "base.html": """<!DOCTYPE html>
<html>
<head><meta charset="UTF-8"><title>{{ handler.settings["blog_title"] }}</title>
<link rel="stylesheet" href="/static/blog.css" type="text/css"></head>
<body><div id="body"><div id="header"><div class="account">
{% if current_user %}<a href="/compose">New post</a> - <a href="/auth/logout?next={{ url_escape(request.uri) }}">Sign out</a>
{% else %}<a href="/auth/login?next={{ url_escape(request.uri) }}">Sign in</a> to compose/edit{% end %}
</div><h1><a href="/">{{ handler.settings["blog_title"] }}</a></h1></div>
<div id="content">{% block body %}{% end %}</div></div></body></html>
""",
    "entry.html": """<div class="entry">
<h1><a href="/entry/{{ entry["slug"] }}">{{ entry["title"] }}</a></h1>
<div class="date">{{ locale.format_date(entry["published"], full_format=True) }}</div>
<div class="body">{% raw entry["html"] %}</div>
{% if current_user %}<div class="admin"><a href="/compose?id={{ entry["id"] }}">Edit this post</a></div>{% end %}
</div>
""",
    "home.html": """{% extends "base.html" %}
{% block body %}{% for entry in entries %}{% include "entry.html" %}{% end %}
<div><a href="/archive">Archive</a></div>{% end %}
""",
    "one.html": """{% extends "base.html" %}
{% block body %}{% include "entry.html" %}{% end %}
""",
    "compose.html": """{% extends "base.html" %}
{% block body %}<form action="/compose" method="post" class="compose">
<input name="title" type="text" value="{{ entry["title"] if entry else "" }}">
<textarea name="markdown">{{ entry["markdown"] if entry else "" }}</textarea>
<input type="submit" value="Publish post">
{% if entry %}<input type="hidden" name="id" value="{{ entry["id"] }}">{% end %}
{% module xsrf_form_html() %}</form>{% end %}
""",
    "login.html": """{% extends "base.html" %}
{% block body %}{% if error %}<p class="error">Error: {{ error }}</p>{% end %}
<form action="/auth/login" method="post">
<input name="email" type="email"><input name="password" type="password">
{% module xsrf_form_html() %}<input type="submit" value="Sign in"></form>{% end %}
""",
}


class BaseHandler(tornado.web.RequestHandler):
    @property
    def db(self):
        return self.application.db

    def get_current_user(self):
        user_id = self.get_signed_cookie("blogdemo_user")
        if not user_id:
            return None
        return self.db.execute("SELECT id FROM authors WHERE id = ?", (int(user_id),)).fetchone()

    def any_author_exists(self):
        return self.db.execute("SELECT 1 FROM authors LIMIT 1").fetchone() is not None

    async def bcrypt(self, function, *args):
        if self.settings["bcrypt_in_pool"]:
            return await tornado.ioloop.IOLoop.current().run_in_executor(None, function, *args)
        return function(*args)


def row_dict(cursor, row):
    return {column[0]: row[i] for i, column in enumerate(cursor.description)}


class HomeHandler(BaseHandler):
    def get(self):
        entries = self.db.execute("SELECT * FROM entries ORDER BY published DESC LIMIT 5").fetchall()
        if not entries:
            self.redirect("/compose")
            return
        self.render("home.html", entries=entries)


class EntryHandler(BaseHandler):
    def get(self, slug):
        entry = self.db.execute("SELECT * FROM entries WHERE slug = ?", (slug,)).fetchone()
        if not entry:
            raise tornado.web.HTTPError(404)
        self.render("one.html", entry=entry)


class ComposeHandler(BaseHandler):
    @tornado.web.authenticated
    def get(self):
        id = self.get_argument("id", None)
        entry = None
        if id:
            entry = self.db.execute("SELECT * FROM entries WHERE id = ?", (int(id),)).fetchone()
        self.render("compose.html", entry=entry)

    @tornado.web.authenticated
    def post(self):
        id = self.get_argument("id", None)
        title = self.get_argument("title")
        text = self.get_argument("markdown")
        html = markdown.markdown(text)
        if id:
            entry = self.db.execute("SELECT * FROM entries WHERE id = ?", (int(id),)).fetchone()
            if not entry:
                raise tornado.web.HTTPError(404)
            slug = entry["slug"]
            self.db.execute(
                "UPDATE entries SET title = ?, markdown = ?, html = ? WHERE id = ?",
                (title, text, html, int(id)),
            )
        else:
            slug = unicodedata.normalize("NFKD", title)
            slug = re.sub(r"[^\w]+", " ", slug)
            slug = "-".join(slug.lower().strip().split())
            slug = slug.encode("ascii", "ignore").decode("ascii")
            if not slug:
                slug = "entry"
            while self.db.execute("SELECT 1 FROM entries WHERE slug = ?", (slug,)).fetchone():
                slug += "-2"
            self.db.execute(
                "INSERT INTO entries (author_id, title, slug, markdown, html, published, updated)"
                " VALUES (?, ?, ?, ?, ?, datetime('now'), datetime('now'))",
                (self.current_user["id"], title, slug, text, html),
            )
        self.db.commit()
        self.redirect("/entry/" + slug)


class AuthCreateHandler(BaseHandler):
    async def post(self):
        if self.any_author_exists():
            raise tornado.web.HTTPError(400, "author already created")
        hashed_password = await self.bcrypt(
            bcrypt.hashpw, tornado.escape.utf8(self.get_argument("password")), bcrypt.gensalt()
        )
        cursor = self.db.execute(
            "INSERT INTO authors (email, name, hashed_password) VALUES (?, ?, ?)",
            (self.get_argument("email"), self.get_argument("name"), tornado.escape.to_unicode(hashed_password)),
        )
        self.db.commit()
        self.set_signed_cookie("blogdemo_user", str(cursor.lastrowid))
        self.redirect(self.get_argument("next", "/"))


class AuthLoginHandler(BaseHandler):
    def get(self):
        if not self.any_author_exists():
            self.redirect("/auth/create")
        else:
            self.render("login.html", error=None)

    async def post(self):
        author = self.db.execute(
            "SELECT * FROM authors WHERE email = ?", (self.get_argument("email"),)
        ).fetchone()
        if not author:
            self.render("login.html", error="email not found")
            return
        matches = await self.bcrypt(
            bcrypt.checkpw,
            tornado.escape.utf8(self.get_argument("password")),
            tornado.escape.utf8(author["hashed_password"]),
        )
        if matches:
            self.set_signed_cookie("blogdemo_user", str(author["id"]))
            self.redirect(self.get_argument("next", "/"))
        else:
            self.render("login.html", error="incorrect password")


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--db", required=True)
    parser.add_argument("--bcrypt", choices=["loop", "pool"], default="pool")
    args = parser.parse_args()

    db = sqlite3.connect(args.db, detect_types=sqlite3.PARSE_DECLTYPES)
    db.row_factory = row_dict
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS authors (id INTEGER PRIMARY KEY, email TEXT UNIQUE,
            name TEXT, hashed_password TEXT);
        CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY, author_id INTEGER,
            slug TEXT UNIQUE, title TEXT, markdown TEXT, html TEXT,
            published TIMESTAMP, updated TIMESTAMP);
        CREATE INDEX IF NOT EXISTS published ON entries (published);
        """
    )
    app = tornado.web.Application(
        [
            (r"/", HomeHandler),
            (r"/entry/([^/]+)", EntryHandler),
            (r"/compose", ComposeHandler),
            (r"/auth/create", AuthCreateHandler),
            (r"/auth/login", AuthLoginHandler),
        ],
        blog_title="Tornado Blog",
        template_loader=tornado.template.DictLoader(TEMPLATES),
        xsrf_cookies=True,
        cookie_secret="bench-secret",
        login_url="/auth/login",
        bcrypt_in_pool=args.bcrypt == "pool",
    )
    app.db = db
    app.listen(args.port, "127.0.0.1")
    print(f"tornado blog listening on http://127.0.0.1:{args.port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
