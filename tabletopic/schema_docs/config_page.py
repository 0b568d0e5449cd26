"""docs/configuration.md, written from the config model's JSON Schema so the page cannot drift from the code.

`python -m tabletopic.schema_docs.config_page --write` rewrites it; `--check` exits 1 when the page is stale."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tabletopic.config import config_json_schema

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

_INTRO = """\
# Configuration

<!-- Generated from tabletopic/config.py by `python -m tabletopic.schema_docs.config_page --write`: edit the model's
docstrings, not this page. -->

tabletopic reads one YAML file (`--config FILE`, or `TABLETOPIC_CONFIG`), then `TABLETOPIC_*` environment
variables over it, then command-line flags over both. Every key below is checked when the file loads: an
unknown key is refused with the nearest known one (`commit.interval_second: unknown key (did you mean
'interval_seconds'?)`), a wrong type or a missing required key names the key, and a YAML syntax error names the
file and line. The same model gives the Helm chart's `values.schema.json`, so the chart refuses what the
writer would.

A minimal file:

```yaml
kafka:
  bootstrap.servers: localhost:9092
tables:
  - table: shop.orders
    topic: orders
```

- **Pass-through sections.** `kafka` holds librdkafka settings and `catalog` pyiceberg catalog properties
  (beside its own `name` and `warehouse`), as those libraries name them. `true` and numbers are passed as the
  strings the libraries want.
- **Environment overrides.** `TABLETOPIC_<SECTION>__<KEY>`: `TABLETOPIC_KAFKA__BOOTSTRAP_SERVERS` (in `kafka`,
  `_` becomes `.`), `TABLETOPIC_CATALOG__S3__ENDPOINT` (in `catalog`, `__` becomes `.` and `_` becomes `-`, as
  in pyiceberg), `TABLETOPIC_COMMIT__INTERVAL_SECONDS`, `TABLETOPIC_GROUP_ID`. A list may be given as
  `a,b`.
- **Secrets.** Any value may say `${env:VAR}` or `${file:PATH}` instead of holding the secret. Values under
  secret-looking keys (`sasl.password`, `s3.secret-access-key`, `credential`, `basic.auth.user.info`, ...) and
  every referenced value are masked in logs, errors and the config's repr.
"""

_SECTIONS = [
    ("Top level", None),
    ("`kafka`", "kafka"),
    ("`catalog`", "CatalogConfig"),
    ("`schema_registry`", "SchemaRegistryConfig"),
    ("`commit`", "CommitConfig"),
    ("`consumer`", "ConsumerConfig"),
    ("`tables[]`: each table", "TableConfig"),
    ("`maintenance`", "MaintenanceConfig"),
    ("`http`", "HttpConfig"),
]


def render(schema: dict[str, Any]) -> str:
    definitions = schema["$defs"]
    parts = [_INTRO]
    for title, name in _SECTIONS:
        if name == "kafka":
            parts.append(f"## {title}\n\n{_one_line(schema['properties']['kafka'].get('description', ''))}\n")
            continue
        section = schema if name is None else definitions[name]
        lead = "" if name is None else f"{_one_line(section.get('description', ''))}\n\n"
        rows = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
        for key, prop in section["properties"].items():
            required = key in section.get("required", [])
            default = "required" if required else _default(prop)
            rows.append(f"| `{key}` | {_type(prop)} | {default} | {_one_line(prop.get('description', ''))} |")
        parts.append(f"## {title}\n\n{lead}" + "\n".join(rows) + "\n")
    parts.append(_NOTES)
    return "\n".join(parts)


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(prop: dict[str, Any]) -> str:
    if "default" not in prop:
        return "see section" if "$ref" in prop else "empty" if prop.get("type") in ("array", "object") else ""
    value = prop["default"]
    if value is None:
        return "unset"
    if value in ([], {}):
        return "empty"
    return f"`{json.dumps(value)}`"


def _type(prop: dict[str, Any]) -> str:
    options = [p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"]
    return " or ".join(_one_type(p) for p in options)


def _one_type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return "section"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_one_type(prop.get('items', {}))}"
    if kind == "object":
        return "mapping"
    bounds = []
    if "exclusiveMinimum" in prop:
        bounds.append(f"> {prop['exclusiveMinimum']}")
    if "minimum" in prop:
        bounds.append(f"≥ {prop['minimum']}")
    if "maximum" in prop:
        bounds.append(f"≤ {prop['maximum']}")
    return f"{kind} ({', '.join(bounds)})" if bounds else str(kind)


_NOTES = """\
## Notes

### `rename_columns` (per table)

Gives top-level fields of a table's values another column name, e.g. to rebuild a table with a
renamed column:

```yaml
kafka:
  bootstrap.servers: localhost:9092
tables:
  - table: shop.orders
    topic: orders
    format: json            # json or avro; a raw table has no fields to rename
    rename_columns:
      user_id: customer_id  # source field -> column name
      amt: amount
    mode: upsert
    key: [customer_id]      # the key names columns: the renamed names
```

- Top-level fields only; nested fields keep their names. Types, evolution and dead letters are
  as for any column (docs/types.md, "Renamed columns").
- With `column_names: lowercase`, renaming comes after folding: the source names are matched folded
  (two sources that fold together are refused), the column names are used as written.
- Refused when loading the config (ConfigError naming the table and the key): a column name that is
  also a renamed field (`a: b, b: c`, or `a: a`), two fields onto one column, an empty name, a
  `_kafka_*` metadata column, a `cdc_columns` column, `_key` on a string- or bytes-keyed upsert
  table, any rename on `format: raw`, and an upsert `key:` listing a field that is renamed away
  (list its new name).
- A record holding both a renamed field and its target name is a dead letter `rename_collision`;
  the records around it go on.
- `tabletopic audit --values --config FILE` re-decodes the topic under the renames of the table as
  FILE lists it.
- Changing the renames of an existing table changes what its rows are: rebuild it (new columns are
  added, the old ones stay and are no longer filled).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write docs/configuration.md from the config model.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite the page")
    action.add_argument("--check", action="store_true", help="exit 1 when the page differs from the model")
    args = parser.parse_args(argv)
    page = render(config_json_schema())
    if args.write:
        PAGE.write_text(page)
        return 0
    if PAGE.read_text() != page:
        print(f"{PAGE} is stale: run python -m tabletopic.schema_docs.config_page --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
