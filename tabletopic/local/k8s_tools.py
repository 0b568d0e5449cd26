"""helm, kubeconform and the Kubernetes JSON schemas that the chart tests need, cached once.

helm and kubeconform are Go modules, built here with the machine's `go` (from the Go module
proxy). kubeconform fetches its schemas from GitHub by default, which we do not reach, so the
schemas come from registries instead:

- Kubernetes' own kinds: the JSON schemas that the PyPI package `kubernetes-validate` ships,
  one directory per Kubernetes version (`v1.30.0-local` and `v1.30.0-local-strict`).
- ServiceMonitor (a prometheus-operator CRD): its CRD YAML in the prometheus-operator Go
  module, its `openAPIV3Schema` written out as a JSON schema.

`kubeconform_args()` gives the flags that point kubeconform at both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import yaml

from tabletopic.local.jvm import cache_root

HELM_MODULE = "helm.sh/helm/v3"
HELM_VERSION = "v3.22.0"
KUBECONFORM_MODULE = "github.com/yannh/kubeconform"
KUBECONFORM_VERSION = "v0.8.0"
# The schemas of this Kubernetes version are the ones the chart is checked against.
KUBERNETES_VERSION = "1.30.0"
KUBERNETES_VALIDATE_VERSION = "1.37.0"  # PyPI; ships schemas for Kubernetes 1.25 to 1.37
# Its one wheel (py3-none-any): pip refuses any other file under that name.
KUBERNETES_VALIDATE_SHA256 = "85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9"
PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
SERVICEMONITOR_CRD = "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"

GO_MISSING = (
    "Go is needed to build helm and kubeconform for the chart tests: apt-get install -y golang-go "
    "(an older go fetches the Go 1.26 toolchain that helm needs from the module proxy by itself)"
)


def bin_dir() -> Path:
    return cache_root() / "bin"


def fetch_helm() -> Path:
    """The helm binary, built once with `go install`."""
    return _go_install(HELM_MODULE + "/cmd/helm", HELM_VERSION, "helm")


def fetch_kubeconform() -> Path:
    """The kubeconform binary, built once with `go install`."""
    return _go_install(KUBECONFORM_MODULE + "/cmd/kubeconform", KUBECONFORM_VERSION, "kubeconform")


def kubernetes_schemas() -> Path:
    """The schema root: `v<K8S>-local[-strict]/<kind>-<group>-<version>.json` and `crds/<group>/...`."""
    pins = f"v{KUBERNETES_VERSION}-kubernetes-validate-{KUBERNETES_VALIDATE_VERSION}-po-{PROMETHEUS_OPERATOR_VERSION}"
    root = cache_root() / "k8s-schemas" / pins
    if (root / "crds").is_dir():  # written last: the directory is complete
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as scratch:
        staging = Path(scratch) / "schemas"
        _extract_kubernetes_schemas(Path(scratch), staging)
        _write_servicemonitor_schemas(staging / "crds")
        shutil.rmtree(root, ignore_errors=True)
        try:
            staging.rename(root)
        except OSError:
            if not (root / "crds").is_dir():  # not another process finishing first
                raise
    return root


def kubeconform_args() -> list[str]:
    """The flags that validate against the cached schemas only (never the network)."""
    root = kubernetes_schemas()
    kinds = "{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    crds = "crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}{{ .StrictSuffix }}.json"
    return [
        "-kubernetes-version", KUBERNETES_VERSION,
        "-schema-location", str(root / kinds),
        "-schema-location", str(root / crds),
    ]


def _go() -> str:
    found = shutil.which("go")
    if found is None:
        raise RuntimeError(GO_MISSING)
    return found


def _go_install(package: str, version: str, name: str) -> Path:
    """`GOBIN=... go install package@version`, kept as bin/<name>-<version> (a pin bump rebuilds)."""
    target = bin_dir() / f"{name}-{version}"
    if target.exists():
        return target
    bin_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=bin_dir()) as gobin:
        command = [_go(), "install", f"{package}@{version}"]
        print(f"building {name} {version}: GOBIN={gobin} {' '.join(command)}", file=sys.stderr)
        # CGO off: static binaries, no C toolchain needed. GOTOOLCHAIN=auto (unless set): an older go
        # switches to the toolchain the module asks for, even where a distribution defaults to "local".
        env = {"GOTOOLCHAIN": "auto", **os.environ, "GOBIN": gobin, "CGO_ENABLED": "0"}
        subprocess.run(command, check=True, env=env)
        os.replace(Path(gobin) / name, target)
    return target


def _extract_kubernetes_schemas(scratch: Path, destination: Path) -> None:
    """Download the kubernetes-validate wheel and unpack one Kubernetes version's schemas."""
    pinned = scratch / "kubernetes-validate.txt"
    requirement = f"kubernetes-validate=={KUBERNETES_VALIDATE_VERSION} --hash=sha256:{KUBERNETES_VALIDATE_SHA256}"
    pinned.write_text(requirement + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--require-hashes",
         "-d", str(scratch), "-r", str(pinned)],
        check=True,
    )
    wheel = next(scratch.glob("kubernetes_validate-*.whl"))
    prefix = "kubernetes_validate/kubernetes-json-schema/"
    wanted = (f"v{KUBERNETES_VERSION}-local/", f"v{KUBERNETES_VERSION}-local-strict/")
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            relative = member.removeprefix(prefix)
            if member.startswith(prefix) and relative.startswith(wanted) and not member.endswith("/"):
                path = destination / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                keep_id = relative.endswith("/_definitions.json")
                path.write_text(_local_refs(archive.read(member).decode(), keep_id))
    if not (destination / f"v{KUBERNETES_VERSION}-local-strict" / "deployment-apps-v1.json").exists():
        raise RuntimeError(f"kubernetes-validate {KUBERNETES_VALIDATE_VERSION} has no Kubernetes {KUBERNETES_VERSION}")


def _local_refs(text: str, keep_id: bool) -> str:
    """A wheel schema whose refs kubeconform resolves to the _definitions.json beside it.

    Each kind's schema has an `$id` under https://kubernetes.io/api/ and refs to
    "/api/_definitions.json#...", which kubernetes-validate maps itself: without the `$id`, and with
    relative refs, they resolve against the file's own path instead.
    """
    schema = json.loads(text.replace('"/api/_definitions.json#', '"_definitions.json#'))
    if not keep_id:
        schema.pop("$id", None)
    return json.dumps(schema)


def _write_servicemonitor_schemas(destination: Path) -> None:
    """ServiceMonitor's schema from the CRD in the prometheus-operator Go module."""
    listing = subprocess.run(
        [_go(), "mod", "download", "-json", f"{PROMETHEUS_OPERATOR_MODULE}@{PROMETHEUS_OPERATOR_VERSION}"],
        check=True,
        capture_output=True,
        text=True,
    )
    crd = yaml.safe_load((Path(json.loads(listing.stdout)["Dir"]) / SERVICEMONITOR_CRD).read_text())
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"].lower()
    for version in crd["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        folder = destination / group
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{kind}_{version['name']}.json").write_text(json.dumps(schema, indent=1))
        (folder / f"{kind}_{version['name']}-strict.json").write_text(json.dumps(_strict(schema), indent=1))


def _strict(schema: Any) -> Any:
    """A copy of an OpenAPI schema that also refuses unknown fields, as kubeconform's -strict schemas do."""
    if not isinstance(schema, dict):
        return schema
    strict = dict(schema)
    if "properties" in strict:
        strict["properties"] = {name: _strict(field) for name, field in strict["properties"].items()}
        strict.setdefault("additionalProperties", False)
    if isinstance(strict.get("additionalProperties"), dict):
        strict["additionalProperties"] = _strict(strict["additionalProperties"])
    if "items" in strict:
        strict["items"] = _strict(strict["items"])
    for combinator in ("allOf", "anyOf", "oneOf"):
        if combinator in strict:
            strict[combinator] = [_strict(option) for option in strict[combinator]]
    return strict
