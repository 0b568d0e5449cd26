"""`${env:VAR}` / `${file:PATH}` in config, and the logs never showing what they resolve to."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import structlog
import yaml

from tabletopic import logs
from tabletopic.config import load_config
from tabletopic.exceptions import ConfigError
from tabletopic.references import resolve


def test_env_and_file_references_resolve(tmp_path: Path) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text("from-a-file\n")
    data = {"kafka": {"sasl.password": f"${{file:{secret_file}}}", "sasl.username": "${env:USER_NAME}"},
            "list": ["a-${env:USER_NAME}-b", 3], "literal": "$${env:NOT_A_REFERENCE}"}
    resolved, secrets = resolve(data, {"USER_NAME": "alice"})
    assert resolved == {"kafka": {"sasl.password": "from-a-file", "sasl.username": "alice"},
                        "list": ["a-alice-b", 3], "literal": "${env:NOT_A_REFERENCE}"}
    assert secrets == {"from-a-file", "alice"}


def test_a_missing_variable_names_the_key_and_the_variable() -> None:
    with pytest.raises(ConfigError) as error:
        resolve({"catalog": {"s3.secret-access-key": "${env:NOPE}"}}, {})
    assert "catalog.s3.secret-access-key" in str(error.value)
    assert "NOPE" in str(error.value)


def test_a_missing_file_names_the_key_and_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        resolve({"kafka": {"sasl.password": f"${{file:{tmp_path}/absent}}"}}, {})
    assert "kafka.sasl.password" in str(error.value) and "absent" in str(error.value)


def _config_file(tmp_path: Path) -> Path:
    (tmp_path / "key").write_text("s3-secret-from-file")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "kafka": {"bootstrap.servers": "127.0.0.1:9092", "sasl.password": "${env:KAFKA_PASSWORD}",
                  "sasl.username": "alice"},
        "catalog": {"warehouse": str(tmp_path), "s3.secret-access-key": f"${{file:{tmp_path}/key}}",
                    "token": "inline-token-value"},
        "tables": [{"table": "ns.t", "topic": "t"}],
    }))
    return path


def test_loaded_config_knows_its_secrets(tmp_path: Path) -> None:
    config = load_config(_config_file(tmp_path), environ={"KAFKA_PASSWORD": "kafka-pass-from-env"})
    assert config.kafka["sasl.password"] == "kafka-pass-from-env"
    assert config.catalog.properties["s3.secret-access-key"] == "s3-secret-from-file"
    # referenced values, and inline values under secret-looking keys; not the user name
    assert {"kafka-pass-from-env", "s3-secret-from-file", "inline-token-value"} <= config.secret_values
    assert "alice" not in config.secret_values


def test_log_lines_mask_every_secret_in_every_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config(_config_file(tmp_path), environ={"KAFKA_PASSWORD": "kafka-pass-from-env"})
    logs.configure("debug", json_output=True, secrets=config.secret_values)
    log = structlog.get_logger("test")
    log.info("config.loaded", kafka=config.kafka, catalog=config.catalog.properties)
    log.info("nested", detail=["x", {"deep": "url=s3://k:s3-secret-from-file@host"}], number=3)
    try:
        raise RuntimeError("auth failed for kafka-pass-from-env")
    except RuntimeError:
        log.exception("failed")
    text = capsys.readouterr().err
    for secret in ("kafka-pass-from-env", "s3-secret-from-file", "inline-token-value"):
        assert secret not in text
    lines = [json.loads(line) for line in io.StringIO(text)]
    assert lines[0]["kafka"]["sasl.password"] == logs.MASK
    assert lines[0]["kafka"]["sasl.username"] == "alice"
    assert lines[1]["detail"][1]["deep"] == f"url=s3://k:{logs.MASK}@host"
    assert lines[1]["number"] == 3
    assert logs.MASK in lines[2]["exception"]
    structlog.reset_defaults()
