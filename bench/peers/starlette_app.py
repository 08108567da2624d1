"""TechEmpower test types on Starlette + asyncpg, served by uvicorn
(bench/compare: python3 -m uvicorn starlette_app:app --workers 1 ...)."""
import json

import asyncpg
import jinja2
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

import common

env = jinja2.Environment(loader=jinja2.FileSystemLoader(common.TEMPLATES), autoescape=True)
template = env.get_template("fortunes.html")
pool = None


class JSON(Response):
    media_type = "application/json"

    def render(self, content):
        return json.dumps(content, separators=(",", ":")).encode()


async def startup():
    global pool
    pool = await asyncpg.create_pool(**common.asyncpg_kwargs(), min_size=common.POOL,
                                     max_size=common.POOL)


async def plaintext(request):
    return PlainTextResponse(b"Hello, World!")


async def json_view(request):
    return JSON({"message": "Hello, World!"})


async def db(request):
    async with pool.acquire() as c:
        row = await c.fetchrow(common.WORLD, common.random_id())
    return JSON({"id": row[0], "randomNumber": row[1]})


async def queries(request):
    async with pool.acquire() as c:
        return JSON(await common.read_worlds(c, common.queries(request.query_params.get("queries"))))


async def fortunes(request):
    async with pool.acquire() as c:
        rows = await c.fetch(common.FORTUNE)
    return HTMLResponse(template.render(fortunes=common.fortunes(rows)))


async def updates(request):
    async with pool.acquire() as c:
        worlds = await common.update_worlds(c, common.queries(request.query_params.get("queries")))
    return JSON(worlds)


app = Starlette(routes=[
    Route("/plaintext", plaintext), Route("/json", json_view), Route("/db", db),
    Route("/queries", queries), Route("/fortunes", fortunes), Route("/updates", updates),
], on_startup=[startup])
