"""TechEmpower test types on Quart + asyncpg, served by hypercorn
(bench/compare: hypercorn -w 1 -k uvloop quart_app:app ...)."""
import json

import asyncpg
from quart import Quart, Response, render_template, request

import common

app = Quart(__name__, template_folder=common.TEMPLATES)
pool = None


def as_json(obj):
    return Response(json.dumps(obj, separators=(",", ":")), mimetype="application/json")


@app.before_serving
async def startup():
    global pool
    pool = await asyncpg.create_pool(**common.asyncpg_kwargs(), min_size=common.POOL,
                                     max_size=common.POOL)


@app.route("/plaintext")
async def plaintext():
    return Response(b"Hello, World!", mimetype="text/plain")


@app.route("/json")
async def json_view():
    return as_json({"message": "Hello, World!"})


@app.route("/db")
async def db():
    async with pool.acquire() as c:
        row = await c.fetchrow(common.WORLD, common.random_id())
    return as_json({"id": row[0], "randomNumber": row[1]})


@app.route("/queries")
async def queries():
    async with pool.acquire() as c:
        return as_json(await common.read_worlds(c, common.queries(request.args.get("queries"))))


@app.route("/fortunes")
async def fortunes():
    async with pool.acquire() as c:
        rows = await c.fetch(common.FORTUNE)
    return await render_template("fortunes.html", fortunes=common.fortunes(rows))


@app.route("/updates")
async def updates():
    async with pool.acquire() as c:
        worlds = await common.update_worlds(c, common.queries(request.args.get("queries")))
    return as_json(worlds)
