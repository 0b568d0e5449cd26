"""The chart's values.schema.json is what tabletopic.schema_docs.chart_values builds from the config model.

tests/chart/test_chart.py checks that helm applies it (lint passes, typos are refused).
"""

from __future__ import annotations

import json
from typing import Any

from tabletopic.config import config_json_schema
from tabletopic.schema_docs import chart_values


def test_the_committed_schema_is_the_generated_one() -> None:
    committed = chart_values.SCHEMA_PATH.read_text()
    assert committed == chart_values.render(), (
        "helm/tabletopic/values.schema.json is stale: run python -m tabletopic.schema_docs.chart_values --write"
    )


def test_check_reports_a_stale_file(tmp_path: Any, monkeypatch: Any) -> None:
    stale = tmp_path / "values.schema.json"
    stale.write_text("{}\n")
    monkeypatch.setattr(chart_values, "SCHEMA_PATH", stale)
    assert chart_values.main(["--check"]) == 1
    assert chart_values.main(["--write"]) == 0
    assert chart_values.main(["--check"]) == 0
    assert json.loads(stale.read_text()) == chart_values.values_schema()


def test_the_config_part_is_the_config_models_schema() -> None:
    model = config_json_schema()
    schema = chart_values.values_schema()
    config = schema["properties"]["config"]
    assert set(config["properties"]) == set(model["properties"])
    assert config["additionalProperties"] is False
    # The model's definitions sit at the root, where its references point.
    assert set(schema["$defs"]) == set(model.get("$defs", {}))
    assert config["properties"]["http"]["$ref"].startswith("#/$defs/")


def test_the_chart_values_refuse_unknown_keys() -> None:
    schema = chart_values.values_schema()
    assert schema["additionalProperties"] is False
    for name in ("image", "service", "livenessProbe", "readinessProbe", "networkPolicy", "podDisruptionBudget",
                 "serviceAccount", "resources"):
        assert schema["properties"][name]["additionalProperties"] is False, name
    new = {"extraVolumes", "extraVolumeMounts", "initContainers", "podAnnotations", "commonLabels"}
    assert new <= set(schema["properties"])
    assert "digest" in schema["properties"]["image"]["properties"]


def test_a_typed_value_also_takes_a_whole_reference() -> None:
    relaxed = chart_values.accept_references({
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 1, "title": "N"},
            "choice": {"enum": ["a", "b"], "type": "string"},
            "maybe": {"anyOf": [{"type": "number"}, {"type": "null"}]},
            "text": {"type": "string"},
            "loose": {"type": ["string", "number"]},
        },
    })
    properties = relaxed["properties"]
    assert properties["n"] == {"title": "N", "anyOf": [{"type": "integer", "minimum": 1}, chart_values.REFERENCE]}
    assert properties["choice"]["anyOf"] == [{"enum": ["a", "b"], "type": "string"}, chart_values.REFERENCE]
    assert properties["maybe"]["anyOf"][0] == {"anyOf": [{"type": "number"}, chart_values.REFERENCE]}
    assert properties["text"] == {"type": "string"}
    assert properties["loose"] == {"type": ["string", "number"]}
