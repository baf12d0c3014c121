"""One SQL text per metric, run as it is on DuckDB and on PostgreSQL.

A metric's SQL names its parameters `:name` (for example `:start` and `:end`, the partition's window).
The two drivers spell named parameters differently (DuckDB `$name`, psycopg `%(name)s`), so the text is
bound for the backend just before it runs. A `::` cast is not a parameter: a parameter's colon follows
neither a colon nor a word character.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

Backend = Literal["duckdb", "postgres"]
PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
# A date's month as one integer (year x 12 + month), the same on both backends: `{d}` is the date's SQL.
MONTH_NUMBER = "CAST(EXTRACT(YEAR FROM {d}) * 12 + EXTRACT(MONTH FROM {d}) AS INTEGER)"


def parameters(sql: str) -> set[str]:
    """The names of the parameters the SQL uses."""
    return set(PARAMETER.findall(sql))


def bind(sql: str, backend: Backend) -> str:
    """The SQL with its `:name` parameters in the driver's own style."""
    if backend == "duckdb":
        return PARAMETER.sub(r"$\1", sql)
    # psycopg reads every % as the start of a placeholder, so a literal % (a LIKE pattern, modulo) doubles.
    return PARAMETER.sub(r"%(\1)s", sql.replace("%", "%%"))


def bound_statement(sql: str, backend: Backend, values: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The SQL bound for `backend` and the values of the parameters it uses. A parameter without a
    value is refused before the database is asked; values the SQL does not use are left out (DuckDB
    refuses named values its statement does not name)."""
    wanted = parameters(sql)
    missing = sorted(wanted - set(values))
    if missing:
        raise ValueError(
            f"the SQL uses parameter(s) {', '.join(':' + name for name in missing)} but no value was given "
            f"for them (given: {', '.join(sorted(values)) or 'none'})"
        )
    return bind(sql, backend), {name: values[name] for name in wanted}
