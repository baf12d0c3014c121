"""``python -m marketplace_assets.warehouse copy --from FILE.duckdb --to postgresql://user@host:port/db``

Copies a DuckDB warehouse into PostgreSQL table by table (see ``copy.py``). The password comes from
MARKETPLACE_WAREHOUSE_PASSWORD (else PGPASSWORD or ~/.pgpass) and is never printed.
"""

from __future__ import annotations

import argparse
import sys

from marketplace_assets.warehouse.base import WarehouseError
from marketplace_assets.warehouse.copy import CopyArgumentError, copy_warehouse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m marketplace_assets.warehouse")
    commands = parser.add_subparsers(dest="command", required=True)
    copy = commands.add_parser("copy", help="copy a DuckDB warehouse into PostgreSQL, table by table")
    copy.add_argument("--from", dest="source", required=True, help="the DuckDB file")
    copy.add_argument("--to", dest="target", required=True, help="postgresql://user@host:port/db")
    copy.add_argument("--tables", default=None, help="only these tables: area.report,area.report2")
    args = parser.parse_args(argv)

    try:
        copy_warehouse(args.source, args.target, tables=args.tables)
    except CopyArgumentError as exc:
        copy.error(str(exc))  # exits 2
    except WarehouseError as exc:
        # The warehouse's own messages never hold the password.
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
