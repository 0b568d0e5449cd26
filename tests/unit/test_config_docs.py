"""The docs cannot drift from the config model: the generated reference is current, and every whole config the
README and docs/ show loads through the model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tabletopic.config import config_json_schema, load_config
from tabletopic.schema_docs import config_page

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# ```yaml opens a whole config; ```yaml fragment (any word after yaml) a piece of one.
WHOLE_YAML = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def whole_configs() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for number, match in enumerate(WHOLE_YAML.finditer(page.read_text())):
            data = yaml.safe_load(match.group(1))
            if isinstance(data, dict) and "tables" in data:
                found.append((f"{page.relative_to(ROOT)}#{number}", match.group(1)))
    return found


def test_the_configuration_page_is_generated_from_the_model():
    assert (ROOT / "docs" / "configuration.md").read_text() == config_page.render(config_json_schema()), \
        "docs/configuration.md is stale: python -m tabletopic.schema_docs.config_page --write"


def test_the_docs_show_whole_configs_to_load():
    assert len(whole_configs()) >= 5


@pytest.mark.parametrize(("where", "text"), whole_configs(), ids=[where for where, _ in whole_configs()])
def test_each_config_the_docs_show_loads(tmp_path: Path, where: str, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    referenced = set(re.findall(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}", text))
    config = load_config(path, environ=dict.fromkeys(referenced, "from-the-environment"))
    assert config.tables, where
