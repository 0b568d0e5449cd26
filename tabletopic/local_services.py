"""Whether this install carries the local services (tabletopic/local/): a source checkout does, the wheel not.

The production install (`pip install tabletopic`, the image) has no downloader; commands that start
local services say how to get them instead of failing with an ImportError.
"""

from __future__ import annotations

import importlib.util


def local_services_missing(command: str) -> str | None:
    """The message for `tabletopic <command>` when tabletopic.local is not installed, else None."""
    if importlib.util.find_spec("tabletopic.local") is not None:
        return None
    return (
        f"{command} needs the local services (a Kafka broker and the downloaders that fetch it), which the "
        "production install leaves out. From a source checkout: `make setup`, or `pip install -e '.[local]'`. "
        "`tabletopic run` needs none of them."
    )
