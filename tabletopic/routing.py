"""Which table a topic feeds when a table entry names its topics by pattern. Pure.

`topic_pattern` is a regex the whole topic name must match (in librdkafka's dialect too: no
inline flags such as `(?i)`); `table` may then use `{topic}`,
filled with the topic's safe name: lower case, every run of characters other than a-z, 0-9
and _ becomes one `_` (`Orders.EU-1` → `orders_eu_1`), and a leading digit gets a `t_`.
"""

from __future__ import annotations

import re

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
