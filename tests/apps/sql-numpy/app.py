"""Stores a few numbers with SQLAlchemy (sqlite, through greenlet's async
bridge) and sums them with numpy; prints one JSON line."""
import asyncio
import json
import sys

import greenlet
import numpy
import sqlalchemy
from sqlalchemy.util import greenlet_spawn


def store_and_sum(values):
    engine = sqlalchemy.create_engine("sqlite://")
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE TABLE n (v INTEGER)"))
        conn.execute(sqlalchemy.text("INSERT INTO n (v) VALUES (:v)"), [{"v": v} for v in values])
        rows = conn.execute(sqlalchemy.text("SELECT v FROM n ORDER BY v")).scalars().all()
    return int(numpy.array(rows).sum())


async def main():
    # greenlet_spawn runs sync code inside a greenlet: the C++ extension is exercised.
    total = await greenlet_spawn(store_and_sum, [int(a) for a in sys.argv[1:]] or [1, 2, 3])
    print(json.dumps({
        "sum": total,
        "numpy": numpy.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "greenlet": greenlet.__version__,
        "bytecode": [m.__cached__ for m in (sys.modules["__main__"], numpy, sqlalchemy, greenlet)
                     if getattr(m, "__cached__", None)],
    }))


if __name__ == "__main__":
    asyncio.run(main())
