"""Every masking rule in one place: what counts as a secret, and how text loses it.

Three kinds of secret leave the process masked (log lines, error messages, HTTP answers):
- known values: whatever came from `${env:}`/`${file:}`, and values under secret-looking keys;
- credentials inside URLs and connection strings, known or not: the password of
  `scheme://user:PASSWORD@host`, and the values of `?token=`, `&password=`, `&sig=`,
  `;AccountKey=`… parameters;
- the same credentials found in config values, added to the known values, so they are masked
  also where a library prints them without their URL around them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

MASK = "***"

# Keys whose values are secrets: librdkafka's (sasl.password, ssl.key.pem, sasl.oauthbearer.config),
# pyiceberg's (s3.secret-access-key, credential, token, adls.account-key, adls.connection-string,
# adls.sas-token.ACCOUNT, adls.client-secret, gcs.oauth2.token), the registry's basic.auth.user.info.
SECRET_KEY = re.compile(
    r"password|secret|token|credential|user\.info|oauthbearer\.config|\.pem$|private|account-key|connection-string",
    re.IGNORECASE,
)

# `scheme://user:` then the password up to the last `@` before a blank: pasted unencoded, it may hold `/`, `?`
# or `@`. Masking a little too much in a rare line beats showing a password.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^\s/?#@:]*)(?::\S*)?@")
# Parameters of a query (`?`, `&`) or of a connection string (`;`) whose names say they carry a secret.
_SECRET_PARAM_NAME = r"[\w.\-]*(?:token|passw(?:or)?d|pwd|secret|sig|signature|credential|api[_\-]?key|accountkey|" \
                     r"sharedaccesskey|auth)[\w.\-]*"
_SECRET_PARAM = re.compile(rf"(?P<lead>[?&;])(?P<name>{_SECRET_PARAM_NAME})=(?P<value>[^&;\s#\"'<>]+)",
                           re.IGNORECASE)
_SECRET_PARAM_NAME_ONLY = re.compile(rf"^{_SECRET_PARAM_NAME}$", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    return SECRET_KEY.search(key) is not None


def mask_credentials(text: str) -> str:
    """`text` with every credential inside a URL or a connection string masked; the rest as it is."""
    if "://" in text:
        text = _URL_USERINFO.sub(_masked_userinfo, text)
    if "=" in text:
        text = _SECRET_PARAM.sub(lambda m: f"{m['lead']}{m['name']}={MASK}", text)
    return text


def _masked_userinfo(match: re.Match[str]) -> str:
    # With a password: the user name stays (it helps to read the line). Without: the userinfo may be a
    # token on its own (https://TOKEN@host), so all of it goes.
    has_password = ":" in match.group(0)[len(match["scheme"]):]
    return f"{match['scheme']}{match['user']}:{MASK}@" if has_password else f"{match['scheme']}{MASK}@"


def credentials_in(value: str) -> set[str]:
    """The credentials inside one config value (a URL's password, secret query parameters), to be masked
    wherever they show up later, with or without their URL."""
    found: set[str] = set()
    if "://" in value:
        for candidate in value.split(","):  # bootstrap lists, several URLs in one value
            try:
                parts = urlsplit(candidate.strip())
                password = parts.password
            except ValueError:
                continue
            if password:
                found.add(password)
            if parts.username and not password and "@" in parts.netloc:
                found.add(parts.username)  # https://TOKEN@host
            found |= {v for k, v in parse_qsl(parts.query) if v and _SECRET_PARAM_NAME_ONLY.match(k)}
    if ";" in value and "=" in value:  # connection strings: AccountKey=…;SharedAccessSignature=…
        for item in value.split(";"):
            name, _, secret = item.partition("=")
            if secret and _SECRET_PARAM_NAME_ONLY.match(name.strip()):
                found.add(secret)
    return found


def secrets_of(sections: Iterable[Mapping[str, str]], urls: Iterable[str | None] = ()) -> set[str]:
    """The secret values of config sections (values under secret-looking keys, credentials inside any
    value) and of single URL settings (schema_registry.url)."""
    found: set[str] = set()
    for section in sections:
        for key, value in section.items():
            if not value:
                continue
            if is_secret_key(key):
                found.add(value)
            found |= credentials_in(value)
    for url in urls:
        if url:
            found |= credentials_in(url)
    return found


class Masker:
    """Masks known secret values, then credentials in URLs, in strings and in nested structures."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        self.known: list[str] = []
        self.add(known)

    def add(self, known: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self.known = sorted({s for s in [*self.known, *known] if s}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.known:
            if secret in value:
                value = value.replace(secret, MASK)
        return mask_credentials(value)

    def value(self, value: object) -> object:
        """Strings masked; dicts, lists, tuples and sets through; numbers and None as they are; any other
        object as its masked str()."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, set)):
            return [self.value(v) for v in value]
        if isinstance(value, (int, float, bool)) or value is None:
            return value
        return self.text(str(value))


_SHORTEST_HIDDEN = 4


def hide_referenced(text: str, sources: Mapping[str, str]) -> str:
    """An error message that may echo config values: each value that came from a reference (`sources`:
    value -> where it came from, e.g. `${env:DB_PASSWORD}`) named by its source instead, quoted or not."""
    for value in sorted(sources, key=len, reverse=True):
        if not value:
            continue
        shown = f"a value from {sources[value]}"
        text = text.replace(repr(value), shown)
        if len(value) >= _SHORTEST_HIDDEN:  # "1" from ${env:WORKERS}: not worth masking every digit 1
            text = text.replace(repr(value)[1:-1], MASK)  # inside a longer value (escaped as repr escapes it)
            text = text.replace(value, MASK)
    return mask_credentials(text)
