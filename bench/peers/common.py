"""What the three Python peers of bench/compare share: the statements (the
same as bench/techempower_db.c), the query-count rule and the connection
parameters, so that they differ only in their framework and server."""
import os
import random
import shlex

WORLD = "SELECT id, randomnumber FROM world WHERE id = $1"
FORTUNE = "SELECT id, message FROM fortune"
# One statement per row, in id order so concurrent updates lock rows in the
# same order (TechEmpower's Python implementations do the same).
UPDATE = "UPDATE world SET randomnumber = $1 WHERE id = $2"
ADDED = "Additional fortune added at request time."
TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
POOL = 8  # database connections per worker process


def conninfo():
    """The libpq conninfo bench/compare passes (key=value pairs)."""
    return os.environ["TECHEMPOWER_PG"]


def asyncpg_kwargs():
    """The conninfo as asyncpg's keyword arguments."""
    kv = dict(p.split("=", 1) for p in shlex.split(conninfo()))
    return {"host": kv.get("host", "127.0.0.1"), "port": int(kv.get("port", 5432)),
            "user": kv.get("user"), "database": kv.get("dbname")}


def queries(raw):
    """The number of queries asked for: 1..500, 1 when missing or not a number."""
    try:
        n = int(raw)
    except (TypeError, ValueError):
        return 1
    return min(max(n, 1), 500)


def random_id():
    return random.randint(1, 10000)


def fortunes(rows):
    """The rows plus the one added at request time, sorted by message."""
    rows = [(r[0], r[1]) for r in rows]
    rows.append((0, ADDED))
    rows.sort(key=lambda r: r[1])
    return rows


def update_args(worlds):
    """(randomNumber, id) per distinct id, in id order: the UPDATE's
    arguments. A row drawn twice keeps the last number given to it."""
    last = {w["id"]: w["randomNumber"] for w in worlds}
    return [(last[i], i) for i in sorted(last)]


async def read_worlds(conn, n):
    """N random World rows as dicts, one statement each (asyncpg)."""
    st = await conn.prepare(WORLD)
    return [dict(zip(("id", "randomNumber"), await st.fetchrow(random_id()))) for _ in range(n)]


async def update_worlds(conn, n):
    """N random World rows read, given new numbers and written back (asyncpg)."""
    worlds = await read_worlds(conn, n)
    for w in worlds:
        w["randomNumber"] = random_id()
    await conn.executemany(UPDATE, update_args(worlds))
    return worlds
