"""TechEmpower test types on Flask + psycopg2, served by gunicorn
(bench/compare: gunicorn -w 1 -k gthread --threads 8 flask_app:app ...).
One pooled connection per gunicorn thread."""
import json

import psycopg2.pool
from flask import Flask, Response, render_template, request

import common

app = Flask(__name__, template_folder=common.TEMPLATES)
pool = psycopg2.pool.ThreadedConnectionPool(1, common.POOL, common.conninfo())
# psycopg2 takes %s placeholders, asyncpg $1
WORLD = common.WORLD.replace("$1", "%s")
UPDATE = common.UPDATE.replace("$1", "%s").replace("$2", "%s")


def as_json(obj):
    return Response(json.dumps(obj, separators=(",", ":")), mimetype="application/json")


class Conn:
    """A pooled connection in autocommit mode for the duration of a with block."""

    def __enter__(self):
        self.c = pool.getconn()
        self.c.autocommit = True
        return self.c.cursor()

    def __exit__(self, *exc):
        pool.putconn(self.c)


@app.route("/plaintext")
def plaintext():
    return Response(b"Hello, World!", mimetype="text/plain")


@app.route("/json")
def json_view():
    return as_json({"message": "Hello, World!"})


@app.route("/db")
def db():
    with Conn() as cur:
        cur.execute(WORLD, (common.random_id(),))
        row = cur.fetchone()
    return as_json({"id": row[0], "randomNumber": row[1]})


def read_worlds(cur, n):
    out = []
    for _ in range(n):
        cur.execute(WORLD, (common.random_id(),))
        row = cur.fetchone()
        out.append({"id": row[0], "randomNumber": row[1]})
    return out


@app.route("/queries")
def queries():
    with Conn() as cur:
        return as_json(read_worlds(cur, common.queries(request.args.get("queries"))))


@app.route("/fortunes")
def fortunes():
    with Conn() as cur:
        cur.execute(common.FORTUNE)
        rows = cur.fetchall()
    return render_template("fortunes.html", fortunes=common.fortunes(rows))


@app.route("/updates")
def updates():
    with Conn() as cur:
        worlds = read_worlds(cur, common.queries(request.args.get("queries")))
        for w in worlds:
            w["randomNumber"] = common.random_id()
        cur.executemany(UPDATE, common.update_args(worlds))
    return as_json(worlds)
