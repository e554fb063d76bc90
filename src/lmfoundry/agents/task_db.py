"""The bundled shop database of the tool-use task: customers, products and orders, generated from a
seed so every machine builds the same file and the expected answers can be computed in Python."""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lmfoundry.paths import lmf_home

CUSTOMERS = ["Alice Chen", "Bruno Silva", "Chiara Rossi", "Dmitri Ivanov", "Emeka Obi", "Fatima Khan",
             "Grace Lee", "Hiro Tanaka"]  # fmt: skip
PRODUCTS = [("notebook", 3.5), ("pen", 1.25), ("stapler", 12.0), ("backpack", 45.0), ("lamp", 29.99),
            ("mug", 8.75), ("headphones", 59.0), ("calculator", 19.5)]  # fmt: skip
N_ORDERS = 60


@dataclass(frozen=True)
class Order:
    id: int
    customer: str
    product: str
    quantity: int
    day: int
    """Day of March 2024 (1-31)."""


def make_orders(seed: int = 0) -> list[Order]:
    """The orders table's rows, the same for the same seed."""
    rng = random.Random(seed)
    names = [name for name, _ in PRODUCTS]
    return [
        Order(i + 1, rng.choice(CUSTOMERS), rng.choice(names), rng.randint(1, 5), rng.randint(1, 31))
        for i in range(N_ORDERS)
    ]


def build_database(path: Path, seed: int = 0) -> Path:
    """Write the shop database to `path` (built in a temp file renamed into place, so a reader never
    sees a half-built one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        _fill(sqlite3.connect(tmp), seed)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _fill(conn: sqlite3.Connection, seed: int) -> None:
    conn.executescript(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
        "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL NOT NULL);"
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), "
        "product_id INTEGER REFERENCES products(id), quantity INTEGER NOT NULL, order_date TEXT NOT NULL);"
    )
    conn.executemany("INSERT INTO customers VALUES (?, ?)", [(i + 1, n) for i, n in enumerate(CUSTOMERS)])
    conn.executemany(
        "INSERT INTO products VALUES (?, ?, ?)", [(i + 1, n, p) for i, (n, p) in enumerate(PRODUCTS)]
    )
    customer_id = {name: i + 1 for i, name in enumerate(CUSTOMERS)}
    product_id = {name: i + 1 for i, (name, _) in enumerate(PRODUCTS)}
    conn.executemany(
        "INSERT INTO orders VALUES (?, ?, ?, ?, ?)",
        [
            (o.id, customer_id[o.customer], product_id[o.product], o.quantity, f"2024-03-{o.day:02d}")
            for o in make_orders(seed)
        ],  # fmt: skip
    )
    conn.commit()
    conn.close()


def shop_database(seed: int = 0, directory: Path | None = None) -> Path:
    """The shop database for `seed`, built once into `$LMF_HOME/cache/agents/` (or `directory`)."""
    path = (directory or lmf_home() / "cache" / "agents") / f"shop-{seed}.sqlite"
    return path if path.is_file() else build_database(path, seed)
