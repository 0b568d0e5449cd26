"""The masking rules (secrets.py): credentials inside URLs and connection strings, secret-looking keys
(adls.* among them), the registry URL's userinfo; masked in log lines and in printed errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import structlog
import yaml

from tabletopic import logs
from tabletopic.config import load_config
from tabletopic.secrets import MASK, credentials_in, hide_referenced, is_secret_key, mask_credentials, secrets_of


@pytest.mark.parametrize(("text", "expected"), [
    ("postgresql://tabletopic:PW-91x@db:5432/cat", f"postgresql://tabletopic:{MASK}@db:5432/cat"),
    ("error at https://user:p/a?s@w@registry:8081/subjects", f"error at https://user:{MASK}@registry:8081/subjects"),
    ("https://ghp_TOKEN123@host/x", f"https://{MASK}@host/x"),
    ("GET https://cat/v1/config?warehouse=w&token=TOK123 failed",
     f"GET https://cat/v1/config?warehouse=w&token={MASK} failed"),
    ("http://h/p?password=pw1&x=1", f"http://h/p?password={MASK}&x=1"),
    ("https://acct.blob.core.windows.net/c?sv=2022&se=2026&sig=AbC%2Fd",
     f"https://acct.blob.core.windows.net/c?sv=2022&se=2026&sig={MASK}"),
    ("?X-Amz-Security-Token=IQoJb3&X-Amz-Signature=ab12", f"?X-Amz-Security-Token={MASK}&X-Amz-Signature={MASK}"),
    ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Zm9v+YmFy==;EndpointSuffix=core.windows.net",
     f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={MASK};EndpointSuffix=core.windows.net"),
    ("http://catalog:8181/v1/namespaces and user@example.com",
     "http://catalog:8181/v1/namespaces and user@example.com"),
    ("sqlite:////tmp/wh/catalog.db", "sqlite:////tmp/wh/catalog.db"),
])
def test_credentials_inside_urls_and_connection_strings_are_masked(text: str, expected: str) -> None:
    assert mask_credentials(text) == expected


def test_credentials_in_config_values_become_known_secrets() -> None:
    assert credentials_in("postgresql://u:PW-91x@db/cat") == {"PW-91x"}
    assert credentials_in("https://cat/v1?token=TOK123&x=1") == {"TOK123"}
    assert credentials_in("https://u:a@r1:8081,https://u:b@r2:8081") == {"a", "b"}
    assert credentials_in("AccountName=a;AccountKey=K3y==;EndpointSuffix=x") == {"K3y=="}
    assert credentials_in("broker1:9092,broker2:9092") == set()


@pytest.mark.parametrize("key", ["adls.account-key", "adls.connection-string", "adls.sas-token",
                                 "adls.sas-token.myaccount", "adls.client-secret", "sasl.password",
                                 "basic.auth.user.info", "s3.secret-access-key", "credential", "ssl.key.pem"])
def test_secret_looking_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["adls.account-name", "sasl.username", "uri", "warehouse", "s3.endpoint"])
def test_other_keys(key: str) -> None:
    assert not is_secret_key(key)


def test_secrets_of_sections_and_the_registry_url() -> None:
    found = secrets_of([{"uri": "postgresql://u:PW-91x@db/cat", "adls.account-key": "K3y", "warehouse": "s3://b"}],
                       ["https://reg-user:REG-PW@registry:8081"])
    assert found == {"PW-91x", "K3y", "REG-PW"}


def test_an_error_names_a_referenced_value_by_its_source() -> None:
    sources = {"S3cr3t-Passw0rd!": "${env:DB_PASSWORD}"}
    assert hide_referenced("got 'S3cr3t-Passw0rd!'", sources) == "got a value from ${env:DB_PASSWORD}"
    assert hide_referenced("got 'x-S3cr3t-Passw0rd!'", sources) == f"got 'x-{MASK}'"
    assert hide_referenced("got 'a\\nb'", {"a\nb c": "${file:/f}", "a\nb": "${file:/g}"}) == \
        "got a value from ${file:/g}"


def test_log_lines_mask_url_credentials_adls_keys_and_the_registry_userinfo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "kafka": {"bootstrap.servers": "127.0.0.1:9092"},
        "catalog": {"uri": "postgresql://tabletopic:PG-PW-5f1c@db:5432/catalog", "adls.account-key": "ADLS-KEY-77aa",
                    "adls.connection-string": "AccountName=a;AccountKey=CS-KEY-99"},
        "schema_registry": {"url": "https://reg:REG-PW-31ee@registry:8081"},
        "tables": [{"table": "ns.t", "topic": "t"}],
    }))
    config = load_config(path, environ={})
    logs.configure("debug", json_output=True, secrets=config.secret_values)
    log = structlog.get_logger("test")
    log.info("config", catalog=config.catalog.properties, registry=config.schema_registry.url)
    # the secrets alone, as a library may print them, and a URL no config holds
    log.error("failed", error="password authentication failed: PG-PW-5f1c; key ADLS-KEY-77aa; REG-PW-31ee",
              url="https://cat/v1/config?token=TOK123")
    text = capsys.readouterr().err
    for secret in ("PG-PW-5f1c", "ADLS-KEY-77aa", "CS-KEY-99", "REG-PW-31ee", "TOK123"):
        assert secret not in text
    lines = [json.loads(line) for line in io.StringIO(text)]
    assert lines[0]["catalog"]["uri"] == f"postgresql://tabletopic:{MASK}@db:5432/catalog"
    assert lines[0]["registry"] == f"https://reg:{MASK}@registry:8081"
    assert lines[1]["url"] == f"https://cat/v1/config?token={MASK}"
    assert logs.masked("retry postgresql://x:PG-PW-5f1c@db") == f"retry postgresql://x:{MASK}@db"
    structlog.reset_defaults()
