#!/usr/bin/env python3
"""asyncpg_check.py - asyncpg's default behaviour through the pooler.

asyncpg prepares every query as a named statement and caches it per
connection.  Usage: asyncpg_check.py PORT CLIENTS ROUNDS.  Each client runs
ROUNDS rounds of: a parameterised fetchval, an explicit prepare/fetch, and a
transaction with two statements.  Prints "OK <n>" with the number of checked
results, or the first error.
"""
import asyncio
import sys

import asyncpg


async def client(port, k, rounds):
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user="app", database="app")
    checked = 0
    try:
        stmt = await conn.prepare("SELECT $1::int * 2")
        for i in range(rounds):
            v = await conn.fetchval("SELECT $1::int + $2::int", k, i)
            assert v == k + i, (v, k, i)
            w = await stmt.fetchval(i)
            assert w == 2 * i, (w, i)
            async with conn.transaction():
                a = await conn.fetchval("SELECT $1::text || 'x'", str(k))
                b = await conn.fetchval("SELECT count(*) FROM generate_series(1, $1::int)", i + 1)
            assert a == str(k) + "x" and b == i + 1, (a, b)
            checked += 4
    finally:
        await conn.close()
    return checked


async def main():
    port, clients, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    results = await asyncio.gather(*(client(port, k, rounds) for k in range(clients)))
    print("OK %d" % sum(results))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # report, do not hide
        print("FAIL %s: %s" % (type(e).__name__, e))
        sys.exit(1)
