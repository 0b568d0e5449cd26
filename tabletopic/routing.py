"""Which table a record goes to: by topic pattern (one table per topic) or by a field's value. Pure.

`topic_pattern` is a regex the whole topic name must match (in librdkafka's dialect too: no
inline flags such as `(?i)`); `table` may then use `{topic}`,
filled with the topic's safe name: lower case, every run of characters other than a-z, 0-9
and _ becomes one `_` (`Orders.EU-1` → `orders_eu_1`), and a leading digit gets a `t_`.

`route_field` with `route_tables` sends each record of a JSON topic to the table its field's
value names; other values, a missing field and undecodable values go to the entry's `table`
(where an undecodable one becomes a dead letter): so does a value nested too deep to parse safely.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from tabletopic.decode.json_guard import too_deep

_UNSAFE = re.compile(r"[^a-z0-9_]+")


def safe_name(topic: str) -> str:
    name = _UNSAFE.sub("_", topic.lower()).strip("_") or "topic"
    return f"t_{name}" if name[0].isdigit() else name


def table_for(template: str, topic: str) -> str:
    return template.replace("{topic}", safe_name(topic))


def subscription_pattern(pattern: str) -> str:
    """librdkafka takes a subscription entry as a regex when it starts with `^`."""
    anchored = pattern if pattern.startswith("^") else f"^{pattern}"
    return anchored if anchored.endswith("$") else f"{anchored}$"


def route_values(values: Sequence[bytes | None], field: str) -> list[str | None]:
    """Each JSON value's top-level `field` as text (None when absent, or the value is not a JSON object)."""
    found: list[str | None] = []
    deep = set(too_deep(values))
    for index, value in enumerate(values):
        try:
            parsed = json.loads(value) if value is not None and index not in deep else None
        except (ValueError, UnicodeDecodeError):
            parsed = None
        item = parsed.get(field) if isinstance(parsed, dict) else None
        found.append(None if item is None else str(item))
    return found


def split_by(keys: Sequence[str | None], routes: Mapping[str, str], default: str) -> dict[str, list[int]]:
    """Indices per target table: a key's table from `routes`, any other (or none) to `default`."""
    groups: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(routes.get(key, default) if key is not None else default, []).append(index)
    return groups
