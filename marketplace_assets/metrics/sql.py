"""One SQL text per metric, run as it is on DuckDB and on PostgreSQL.

A metric's SQL names its parameters `:name` (for example `:start` and `:end`, the partition's window).
The two drivers spell named parameters differently (DuckDB `$name`, psycopg `%(name)s`), so the text is
bound for the backend just before it runs. A `::` cast is not a parameter: a parameter's colon follows
neither a colon nor a word character.
"""

from __future__ import annotations

import re
from typing import Literal

Backend = Literal["duckdb", "postgres"]
PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def parameters(sql: str) -> set[str]:
    """The names of the parameters the SQL uses."""
    return set(PARAMETER.findall(sql))


def bind(sql: str, backend: Backend) -> str:
    """The SQL with its `:name` parameters in the driver's own style."""
    if backend == "duckdb":
        return PARAMETER.sub(r"$\1", sql)
    # psycopg reads every % as the start of a placeholder, so a literal % (a LIKE pattern, modulo) doubles.
    return PARAMETER.sub(r"%(\1)s", sql.replace("%", "%%"))
