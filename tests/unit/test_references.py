"""`${env:VAR}` / `${file:PATH}` in config, and the logs never showing what they resolve to."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog
import yaml

from tabletopic import logs
from tabletopic.config import load_config
from tabletopic.exceptions import ConfigError
from tabletopic.references import MAX_FILE_BYTES, allowed_dirs, file_reader, resolve


def test_env_and_file_references_resolve(tmp_path: Path) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text("from-a-file\n")
    data = {"kafka": {"sasl.password": f"${{file:{secret_file}}}", "sasl.username": "${env:USER_NAME}"},
            "list": ["a-${env:USER_NAME}-b", 3], "literal": "$${env:NOT_A_REFERENCE}"}
    resolved, sources = resolve(data, {"USER_NAME": "alice"}, file_reader([tmp_path]))
    assert resolved == {"kafka": {"sasl.password": "from-a-file", "sasl.username": "alice"},
                        "list": ["a-alice-b", 3], "literal": "${env:NOT_A_REFERENCE}"}
    assert sources == {"from-a-file": f"${{file:{secret_file}}}", "alice": "${env:USER_NAME}"}


def test_a_missing_variable_names_the_key_and_the_variable() -> None:
    with pytest.raises(ConfigError) as error:
        resolve({"catalog": {"s3.secret-access-key": "${env:NOPE}"}}, {})
    assert "catalog.s3.secret-access-key" in str(error.value)
    assert "NOPE" in str(error.value)


def test_a_missing_file_names_the_key_and_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        resolve({"kafka": {"sasl.password": f"${{file:{tmp_path}/absent}}"}}, {}, file_reader([tmp_path]))
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


# --- errors never echo a referenced value; ${file:} reads only small regular files in allowed folders ---

SECRET = "S3cr3t-Passw0rd!"


def _write_config(tmp_path: Path, **top: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"kafka": {"bootstrap.servers": "127.0.0.1:9092"},
                                    "tables": [{"table": "ns.t", "topic": "t"}], **top}))
    return path


@pytest.mark.parametrize("top", [
    {"log_level": "${env:LEVEL}"},
    {"http": {"port": "${env:LEVEL}"}},
    {"workers": "${env:LEVEL}"},
    {"consumer": {"start": "from-${env:LEVEL}"}},  # inside a longer value
    {"tables": [{"table": "${env:LEVEL}", "topic": "t"}]},  # caught by validate, not by the types
])
def test_a_bad_typed_value_from_a_reference_is_named_by_its_source_never_shown(tmp_path: Path, top: dict) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(_write_config(tmp_path, **top), environ={"LEVEL": SECRET})
    assert SECRET not in str(error.value)
    assert "${env:LEVEL}" in str(error.value) or logs.MASK in str(error.value)


def test_a_bad_value_from_a_file_says_where_it_came_from(tmp_path: Path) -> None:
    (tmp_path / "level").write_text(SECRET + "\n")
    with pytest.raises(ConfigError) as error:
        load_config(_write_config(tmp_path, log_level=f"${{file:{tmp_path}/level}}"), environ={})
    assert str(error.value) == (f"config error: log_level: expected one of debug, info, warning, error, "
                                f"got a value from ${{file:{tmp_path}/level}}")


def test_proc_self_environ_is_never_read_even_when_every_folder_is_allowed(tmp_path: Path) -> None:
    environ = {"TABLETOPIC_SECRET_DIRS": "/", "DB_PASSWORD": SECRET}
    with pytest.raises(ConfigError) as error:
        load_config(_write_config(tmp_path, log_level="${file:/proc/self/environ}"), environ=environ)
    assert "under /proc" in str(error.value)
    assert SECRET not in str(error.value)
    for path in ("/dev/null", "/sys/kernel/mm/transparent_hugepage/enabled"):
        with pytest.raises(ConfigError, match="under /proc, /sys, /dev"):
            resolve({"k": f"${{file:{path}}}"}, environ)


def test_only_regular_files_of_64_kib_at_most(tmp_path: Path) -> None:
    read = file_reader([tmp_path])
    os.mkfifo(tmp_path / "fifo")  # opening it would wait for a writer: refused before opening
    with pytest.raises(ConfigError, match="not a regular file"):
        resolve({"k": f"${{file:{tmp_path}/fifo}}"}, {}, read)
    with pytest.raises(ConfigError, match="not a regular file"):
        resolve({"k": f"${{file:{tmp_path}}}"}, {}, read)  # a folder
    (tmp_path / "big").write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than 64 KiB"):
        resolve({"k": f"${{file:{tmp_path}/big}}"}, {}, read)
    (tmp_path / "fits").write_bytes(b"y" * MAX_FILE_BYTES)
    assert resolve({"k": f"${{file:{tmp_path}/fits}}"}, {}, read)[0] == {"k": "y" * MAX_FILE_BYTES}


def test_files_only_from_allowed_folders_following_kubernetes_links(tmp_path: Path) -> None:
    mounted, elsewhere = tmp_path / "secrets", tmp_path / "elsewhere"
    (mounted / "..2026_01_01").mkdir(parents=True)
    elsewhere.mkdir()
    (mounted / "..2026_01_01" / "password").write_text("pw\n")
    (mounted / "..data").symlink_to("..2026_01_01")  # as the kubelet lays out a Secret volume
    (mounted / "password").symlink_to("..data/password")
    (elsewhere / "other").write_text("not for config")
    (mounted / "escape").symlink_to(elsewhere / "other")
    environ = {"TABLETOPIC_SECRET_DIRS": str(mounted)}
    assert resolve({"k": f"${{file:{mounted}/password}}"}, environ)[0] == {"k": "pw"}
    for outside in (elsewhere / "other", mounted / "escape", mounted / ".." / "elsewhere" / "other"):
        with pytest.raises(ConfigError, match="outside the folders"):
            resolve({"k": f"${{file:{outside}}}"}, environ)


def test_default_folders_are_the_charts_and_the_config_files_own(tmp_path: Path) -> None:
    assert allowed_dirs({}) == [Path("/etc/tabletopic"), Path("/run/secrets"), Path("/var/run/secrets")]
    assert allowed_dirs({}, tmp_path / "c.yaml")[-1] == tmp_path
    assert allowed_dirs({"TABLETOPIC_SECRET_DIRS": "/a:/b"}, tmp_path / "c.yaml") == [Path("/a"), Path("/b")]
    other = tmp_path / "other"
    other.mkdir()
    (other / "pw").write_text("x")
    (tmp_path / "conf").mkdir()
    config = _write_config(tmp_path / "conf", catalog={"token": f"${{file:{other}/pw}}"})
    with pytest.raises(ConfigError, match="outside the folders"):
        load_config(config, environ={})
    assert load_config(config, environ={"TABLETOPIC_SECRET_DIRS": str(other)}).catalog.properties["token"] == "x"


def test_the_cli_prints_a_config_error_without_the_secret(tmp_path: Path) -> None:
    config = _write_config(tmp_path, http={"port": "${env:DB_PASSWORD}"})
    done = subprocess.run([sys.executable, "-m", "tabletopic", "run", "--config", str(config)],
                          env={**os.environ, "DB_PASSWORD": SECRET}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "http.port" in done.stderr and "${env:DB_PASSWORD}" in done.stderr
    assert SECRET not in done.stderr + done.stdout
