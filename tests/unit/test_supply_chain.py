"""What goes into the image: hash-locked dependencies, the project without dependency resolution,
and no local services (their downloaders stay in a source checkout, behind the `local` extra)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
IMAGE_LOCK = ROOT / "requirements" / "image.lock"
BUILD_LOCK = ROOT / "requirements" / "build.lock"
DOCKERFILE = ROOT / "Dockerfile"

# The image: python:3.11-slim on linux x86_64.
IMAGE_ENVIRONMENT = {
    **default_environment(),
    "python_version": "3.11",
    "python_full_version": "3.11.9",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
}

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def locked(path: Path) -> dict[str, tuple[Version, list[str]]]:
    """name -> (version, hashes) of each requirement in a pip-compile style lock."""
    entries: dict[str, tuple[Version, list[str]]] = {}
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = _PIN.match(line)
        assert match, f"{path.name}: not an exact pin: {line!r}"
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})\b", line)
        assert hashes, f"{path.name}: {match.group(1)} has no --hash"
        entries[canonicalize_name(match.group(1))] = (Version(match.group(2)), hashes)
    return entries


def runtime_requirements() -> list[Requirement]:
    return [Requirement(text) for text in PYPROJECT["project"]["dependencies"]]


def test_every_line_of_the_locks_is_pinned_with_hashes() -> None:
    assert len(locked(IMAGE_LOCK)) > len(runtime_requirements())
    assert "setuptools" in locked(BUILD_LOCK)


def test_the_image_lock_covers_every_runtime_dependency() -> None:
    lock = locked(IMAGE_LOCK)
    for requirement in runtime_requirements():
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{name} (pyproject.toml) is not in {IMAGE_LOCK.name}: run `make lock`"
        version, _ = lock[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{IMAGE_LOCK.name} pins {name}=={version}, outside pyproject.toml's {requirement}: run `make lock`"
        )


def test_the_image_lock_is_closed_under_dependencies() -> None:
    """Everything the runtime dependencies (with their extras) need on the image's platform is locked too,
    as the installed distributions' metadata says: `pip install --no-deps` would leave nothing out."""
    lock = locked(IMAGE_LOCK)
    missing: set[str] = set()
    todo = [(requirement, "pyproject.toml") for requirement in runtime_requirements()]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        requirement, needed_by = todo.pop()
        name = canonicalize_name(requirement.name)
        if (name, frozenset(requirement.extras)) in seen:
            continue
        seen.add((name, frozenset(requirement.extras)))
        if name not in lock:
            missing.add(f"{name} (needed by {needed_by})")
            continue
        for text in metadata.requires(name) or []:
            nested = Requirement(text)
            if nested.marker is None or any(
                nested.marker.evaluate({**IMAGE_ENVIRONMENT, "extra": extra}) for extra in ["", *requirement.extras]
            ):
                todo.append((nested, name))
    assert not missing, f"not in {IMAGE_LOCK.name}: {sorted(missing)}; run `make lock`"


def docker_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), " ".join(rest.split())))
    return instructions


def pip_commands() -> list[str]:
    commands = []
    for keyword, arguments in docker_instructions():
        if keyword == "RUN":
            commands += [part.strip() for part in arguments.split("&&") if re.search(r"\bpip (install|wheel)\b", part)]
    return commands


def test_the_dockerfile_installs_only_hash_checked_files() -> None:
    copies = " ".join(arguments for keyword, arguments in docker_instructions() if keyword == "COPY")
    assert "requirements/image.lock" in copies
    assert "requirements/build.lock" in copies
    commands = pip_commands()
    assert any(c.endswith("pip install --require-hashes --no-deps -r requirements/image.lock") for c in commands)
    assert any(c.endswith("pip install --require-hashes --no-deps -r requirements/build.lock") for c in commands)
    for command in commands:
        # Anything else is the project itself: built without fetching a build backend, installed without deps.
        if "--require-hashes" not in command:
            assert "--no-deps" in command, command
            if " wheel " in command:
                assert "--no-build-isolation" in command, command
            else:
                assert command.endswith("/wheels/tabletopic-*.whl"), command
    assert any(c.endswith("/wheels/tabletopic-*.whl") for c in commands)


def test_the_docker_build_context_holds_the_locks_but_not_the_local_services() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!requirements/*.lock" in ignore
    assert "tabletopic/local/" in ignore
    assert ignore.index("tabletopic/local/") > ignore.index("!tabletopic/")  # the later line wins


def test_the_wheel_leaves_out_the_local_services() -> None:
    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    packages = find_packages(str(ROOT), include=find["include"], exclude=find.get("exclude", ()))
    assert "tabletopic" in packages
    assert "tabletopic.decode" in packages
    assert not [p for p in packages if p == "tabletopic.local" or p.startswith("tabletopic.local.")]


def _imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_quickstart_needs_the_local_services() -> None:
    """The production install works without tabletopic.local: nothing else imports it."""
    package = ROOT / "tabletopic"
    users = {
        str(path.relative_to(ROOT))
        for path in package.rglob("*.py")
        if package / "local" not in path.parents
        and any(name == "tabletopic.local" or name.startswith("tabletopic.local.") for name in _imports_of(path))
    }
    assert users <= {"tabletopic/quickstart.py"}


def test_the_local_extra_brings_what_the_local_services_import() -> None:
    distributions = metadata.packages_distributions()
    provided = {canonicalize_name(r.name) for r in runtime_requirements()}
    local_extra = PYPROJECT["project"]["optional-dependencies"]["local"]
    provided |= {canonicalize_name(Requirement(text).name) for text in local_extra}
    for path in (ROOT / "tabletopic" / "local").glob("*.py"):
        for name in _imports_of(path):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top == "tabletopic":
                continue
            owners = {canonicalize_name(d) for d in distributions.get(top, [])}
            assert owners & provided, f"{path.name} imports {top}, which neither the runtime nor the local extra brings"


def test_quickstart_without_the_local_services_says_how_to_get_them() -> None:
    """As in the image: tabletopic.local cannot be imported; a clear message, not an ImportError traceback."""
    hide_local = (
        "import sys; sys.modules['tabletopic.local'] = None; "
        "from tabletopic.cli import main; sys.exit(main(['quickstart']))"
    )
    result = subprocess.run([sys.executable, "-c", hide_local], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "pip install -e '.[local]'" in result.stderr
    assert "make setup" in result.stderr


@pytest.mark.parametrize("lock", [IMAGE_LOCK, BUILD_LOCK])
def test_the_locks_say_how_to_regenerate_them(lock: Path) -> None:
    assert "make lock" in lock.read_text().splitlines()[1]
