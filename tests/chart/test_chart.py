"""The Helm chart: lint, render, validate every manifest with kubeconform, and check what matters.

helm and kubeconform are built once with Go into the download cache (tabletopic/local/k8s_tools.py);
kubeconform validates against Kubernetes 1.30 schemas and the ServiceMonitor CRD's schema, all
from registries, never the network at test time.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tabletopic.config import load_config
from tabletopic.local import k8s_tools

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "tabletopic"
VALUES = Path(__file__).parent / "values"
EXAMPLE_APP = Path(__file__).parent / "example-app"
SIDECAR_VALUES = CHART / "examples" / "sidecar-values.yaml"
SIDECAR_POD = CHART / "examples" / "sidecar-pod.yaml"
RELEASE = "tt"

CASES = {
    "default": VALUES / "default.yaml",
    "deployment-full": VALUES / "deployment-full.yaml",
    "sidecar": SIDECAR_VALUES,
}
DEPLOYMENT_CASES = ["default", "deployment-full"]

Manifest = dict[str, Any]


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        return k8s_tools.fetch_helm()
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"helm is needed for the chart tests, and building it failed: {exc}")


@pytest.fixture(scope="session")
def kubeconform() -> list[str]:
    try:
        return [str(k8s_tools.fetch_kubeconform()), "-strict", "-summary", "-output", "json",
                *k8s_tools.kubeconform_args()]
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"kubeconform and its schemas are needed for the chart tests, and fetching them failed: {exc}")


def template(helm: Path, *args: str, chart: Path = CHART) -> subprocess.CompletedProcess[str]:
    command = [str(helm), "template", RELEASE, str(chart), "--namespace", "streaming",
               "--kube-version", k8s_tools.KUBERNETES_VERSION, *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def render(helm: Path, *args: str, chart: Path = CHART) -> list[Manifest]:
    result = template(helm, *args, chart=chart)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


_rendered: dict[str, list[Manifest]] = {}


def rendered(helm: Path, name: str) -> list[Manifest]:
    """The chart rendered with one of CASES' values files (once per session)."""
    if name not in _rendered:
        _rendered[name] = render(helm, "-f", str(CASES[name]))
    return _rendered[name]


def values(name: str) -> dict[str, Any]:
    """The values a case renders with: its file merged into the chart's defaults, key by key, as Helm does."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    return _merged(defaults, yaml.safe_load(CASES[name].read_text()) or {})


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        elif value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def http_port(name: str) -> int:
    port: int = values(name)["config"]["http"]["port"]
    return port



def only(manifests: list[Manifest], kind: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[m['kind'] for m in manifests]}"
    return found[0]


def kinds(manifests: list[Manifest]) -> list[str]:
    return sorted(m["kind"] for m in manifests)


def container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod_spec["containers"] if c["name"] == "tabletopic")


def rendered_config(manifests: list[Manifest]) -> dict[str, Any]:
    config = yaml.safe_load(only(manifests, "ConfigMap")["data"]["config.yaml"])
    assert isinstance(config, dict)
    return config


def validate(kubeconform: list[str], manifests: list[Manifest], tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "manifests.yaml"
    path.write_text(yaml.safe_dump_all(manifests))
    result = subprocess.run([*kubeconform, str(path)], capture_output=True, text=True, check=False)
    report = json.loads(result.stdout)
    report["returncode"] = result.returncode
    return report


# --- lint and schema validation ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_helm_lint(helm: Path, name: str) -> None:
    result = subprocess.run(
        [str(helm), "lint", "--strict", "--kube-version", k8s_tools.KUBERNETES_VERSION, str(CHART),
         "-f", str(CASES[name])],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", list(CASES))
def test_every_manifest_is_valid_kubernetes(helm: Path, kubeconform: list[str], name: str, tmp_path: Path) -> None:
    manifests = rendered(helm, name)
    report = validate(kubeconform, manifests, tmp_path)
    assert report["returncode"] == 0, report["resources"]
    # Nothing skipped for want of a schema: ServiceMonitor included.
    assert report["summary"] == {"valid": len(manifests), "invalid": 0, "errors": 0, "skipped": 0}


def test_kubeconform_catches_mistakes(helm: Path, kubeconform: list[str], tmp_path: Path) -> None:
    """The schemas are really applied, strictly, to core kinds and to the ServiceMonitor CRD."""
    manifests = render(helm, "-f", str(CASES["deployment-full"]))
    pod = only(manifests, "Deployment")["spec"]["template"]["spec"]
    container(pod)["securityContext"]["runAsUser"] = "10001"  # a string
    container(pod)["livenessProbe"]["httpGet"]["pathh"] = "/healthz"  # an unknown field
    only(manifests, "ServiceMonitor")["spec"]["endpoints"][0]["intervall"] = "15s"
    report = validate(kubeconform, manifests, tmp_path)
    invalid = {r["kind"]: r["msg"] for r in report["resources"] if r["status"] == "statusInvalid"}
    assert set(invalid) == {"Deployment", "ServiceMonitor"}
    assert "runAsUser" in invalid["Deployment"]
    assert "pathh" in invalid["Deployment"]
    assert "intervall" in invalid["ServiceMonitor"]


# --- what the manifests say ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_modes_render_the_right_objects(helm: Path, name: str) -> None:
    manifests = rendered(helm, name)
    expected = {
        "default": ["ConfigMap", "Deployment", "Service", "ServiceAccount"],
        "deployment-full": ["ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service",
                            "ServiceAccount", "ServiceMonitor"],
        "sidecar": ["ConfigMap", "ServiceAccount"],
    }
    assert kinds(manifests) == expected[name]


def test_sidecar_mode_renders_no_workload_even_with_everything_on(helm: Path) -> None:
    manifests = render(helm, "-f", str(CASES["deployment-full"]), "--set", "mode=sidecar",
                       "--set", "serviceAccount.create=false")
    assert kinds(manifests) == ["ConfigMap"]


@pytest.mark.parametrize("name", DEPLOYMENT_CASES)
def test_probes_and_config_agree_on_the_port(helm: Path, name: str) -> None:
    manifests = rendered(helm, name)
    port = http_port(name)
    deployment = only(manifests, "Deployment")
    tabletopic = container(deployment["spec"]["template"]["spec"])
    assert tabletopic["ports"] == [{"name": "tabletopic-http", "containerPort": port, "protocol": "TCP"}]
    assert tabletopic["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    assert tabletopic["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert rendered_config(manifests)["http"]["port"] == port
    service = only(manifests, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "tabletopic-http"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("name", list(CASES))
def test_the_container_runs_the_mounted_config(helm: Path, name: str) -> None:
    manifests = rendered(helm, name)
    pod = _pod_spec(helm, name, manifests)
    tabletopic = container(pod)
    assert tabletopic["args"] == ["run", "--config", "/etc/tabletopic/config.yaml"]
    mounts = {m["mountPath"]: m for m in tabletopic["volumeMounts"]}
    config_volume = next(v for v in pod["volumes"] if v["name"] == mounts["/etc/tabletopic/config.yaml"]["name"])
    assert config_volume["configMap"]["name"] == only(manifests, "ConfigMap")["metadata"]["name"]
    assert mounts["/etc/tabletopic/config.yaml"]["subPath"] == "config.yaml"
    tmp_volume = next(v for v in pod["volumes"] if v["name"] == mounts["/tmp"]["name"])
    assert "emptyDir" in tmp_volume


@pytest.mark.parametrize("name", list(CASES))
def test_security_context(helm: Path, name: str) -> None:
    manifests = rendered(helm, name)
    pod = _pod_spec(helm, name, manifests)
    security = container(pod)["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("name", list(CASES))
def test_config_is_rendered_as_given(helm: Path, name: str) -> None:
    """workers, http.port and shutdown_timeout_seconds included: the config is their one place."""
    assert rendered_config(rendered(helm, name)) == values(name)["config"]


@pytest.mark.parametrize("name", ["deployment-full", "sidecar"])
def test_rendered_config_loads_in_tabletopic(helm: Path, name: str, tmp_path: Path) -> None:
    """The ConfigMap's config.yaml is one tabletopic accepts, with the Secret's env and files in place."""
    text = only(rendered(helm, name), "ConfigMap")["data"]["config.yaml"]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "REGISTRY_AUTH").write_text("user:registry-pass\n")
    path = tmp_path / "config.yaml"
    path.write_text(text.replace("/etc/tabletopic/secrets/", f"{secrets}/"))
    config = load_config(path, environ={"KAFKA_SASL_PASSWORD": "kafka-pass"})
    given = values(name)["config"]
    assert config.http.port == given["http"]["port"]
    assert config.shutdown_timeout_seconds == given["shutdown_timeout_seconds"]
    assert config.workers == given["workers"]
    assert config.kafka["sasl.password"] == "kafka-pass"
    if name == "deployment-full":
        assert config.schema_registry.properties["basic.auth.user.info"] == "user:registry-pass"


@pytest.mark.parametrize("name", list(CASES))
def test_termination_grace_is_the_shutdown_bound_plus_the_margin(helm: Path, name: str) -> None:
    manifests = rendered(helm, name)
    pod = _pod_spec(helm, name, manifests)
    config = rendered_config(manifests)
    margin = values(name)["terminationGraceMarginSeconds"]
    assert pod["terminationGracePeriodSeconds"] == math.ceil(config["shutdown_timeout_seconds"]) + margin
    assert margin > 2  # the supervisor of several workers waits the bound plus 2 s


# --- workers, the HTTP port and the shutdown bound: set in config, and only there ---------------------


def test_the_http_port_follows_the_config(helm: Path, kubeconform: list[str], tmp_path: Path) -> None:
    manifests = render(helm, "-f", str(CASES["deployment-full"]), "--set", "config.http.port=9876")
    tabletopic = container(only(manifests, "Deployment")["spec"]["template"]["spec"])
    assert tabletopic["ports"][0]["containerPort"] == 9876
    assert tabletopic["livenessProbe"]["httpGet"]["port"] == 9876
    assert tabletopic["readinessProbe"]["httpGet"]["port"] == 9876
    assert only(manifests, "NetworkPolicy")["spec"]["ingress"][0]["ports"] == [{"port": 9876, "protocol": "TCP"}]
    assert rendered_config(manifests)["http"]["port"] == 9876
    assert validate(kubeconform, manifests, tmp_path)["returncode"] == 0


@pytest.mark.parametrize(("timeout", "margin", "grace"), [(45, None, 55), (29.5, None, 40), (20, 3, 23)])
def test_the_grace_period_follows_the_shutdown_bound(helm: Path, tmp_path: Path, timeout: float,
                                                     margin: int | None, grace: int) -> None:
    given: dict[str, Any] = {"config": {"shutdown_timeout_seconds": timeout}}
    if margin is not None:
        given["terminationGraceMarginSeconds"] = margin
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(given))  # a file: --set would make 29.5 a string
    manifests = render(helm, "-f", str(path))
    assert only(manifests, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == grace
    assert rendered_config(manifests)["shutdown_timeout_seconds"] == timeout
    sidecar = notes(helm, tmp_path, "-f", str(SIDECAR_VALUES), "-f", str(path))
    assert f"terminationGracePeriodSeconds to {grace}:" in sidecar


def test_workers_are_set_in_the_config(helm: Path) -> None:
    assert rendered_config(render(helm, "--set", "config.workers=4"))["workers"] == 4
    assert "workers" not in rendered_config(render(helm, "--set", "config.workers=null"))  # one per CPU


@pytest.mark.parametrize(
    ("setting", "new_place"),
    [
        ("workers=2", "set config.workers instead"),
        ("http.port=9999", "set config.http.port instead"),
        ("shutdownTimeoutSeconds=40", "set config.shutdown_timeout_seconds instead"),
        ("terminationGracePeriodSeconds=60", "set terminationGraceMarginSeconds"),
    ],
)
def test_the_values_of_chart_0_1_name_their_new_place(helm: Path, setting: str, new_place: str) -> None:
    result = template(helm, "--set", setting)
    assert result.returncode != 0
    assert f"the value {setting.split('.')[0].split('=')[0]} is gone since chart 0.2.0" in result.stderr
    assert new_place in result.stderr


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["config.http.port=null"], "config.http.port must be set to a port number"),
        (["config.shutdown_timeout_seconds=null"], "config.shutdown_timeout_seconds must be set to a number"),
        (["config.http.enabled=false"], "config.http.enabled must stay true"),
        (["terminationGraceMarginSeconds=2"], "at '/terminationGraceMarginSeconds': minimum: got 2, want 3"),
        (["mode=daemonset"], "at '/mode': value must be one of 'deployment', 'sidecar'"),
    ],
)
def test_template_refuses_bad_values(helm: Path, settings: list[str], message: str) -> None:
    result = template(helm, *(arg for setting in settings for arg in ("--set", setting)))
    assert result.returncode != 0
    assert message in result.stderr


def test_the_chart_derives_pod_settings_only_from_literal_numbers(helm: Path) -> None:
    """tabletopic would resolve ${env:PORT}, but the container port cannot wait for that."""
    result = template(helm, "--set-string", "config.http.port=${env:PORT}")
    assert result.returncode != 0
    assert "config.http.port must be set to a port number" in result.stderr


def test_no_secret_references_without_existing_secret(helm: Path) -> None:
    tabletopic = container(only(render(helm), "Deployment")["spec"]["template"]["spec"])
    assert "envFrom" not in tabletopic
    assert all(m["mountPath"] != "/etc/tabletopic/secrets" for m in tabletopic["volumeMounts"])


def test_existing_secret_as_env_and_files(helm: Path) -> None:
    given = values("deployment-full")
    pod = only(render(helm, "-f", str(CASES["deployment-full"])), "Deployment")["spec"]["template"]["spec"]
    tabletopic = container(pod)
    assert tabletopic["envFrom"] == [{"secretRef": {"name": given["existingSecret"]}}]
    mount = next(m for m in tabletopic["volumeMounts"] if m["mountPath"] == "/etc/tabletopic/secrets")
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == given["existingSecret"]
    assert tabletopic["env"] == given["env"]


def test_full_deployment_settings(helm: Path) -> None:
    given = values("deployment-full")
    manifests = render(helm, "-f", str(CASES["deployment-full"]))
    deployment = only(manifests, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["replicas"] == 3
    assert container(pod)["image"] == "registry.example.com/data/tabletopic:0.1.0-rc1"
    # IRSA: the annotated ServiceAccount is the pod's.
    account = only(manifests, "ServiceAccount")
    assert account["metadata"]["annotations"] == given["serviceAccount"]["annotations"]
    assert pod["serviceAccountName"] == account["metadata"]["name"] == "tabletopic-writer"
    # A spread constraint without a labelSelector gets the pod's own labels; a given one is kept.
    spread = pod["topologySpreadConstraints"]
    assert spread[0]["labelSelector"] == {"matchLabels": labels}
    assert spread[1]["labelSelector"] == given["topologySpreadConstraints"][1]["labelSelector"]
    assert pod["nodeSelector"] == given["nodeSelector"]
    assert pod["tolerations"] == given["tolerations"]
    assert pod["affinity"] == given["affinity"]
    template_meta = deployment["spec"]["template"]["metadata"]
    assert template_meta["annotations"]["example.com/team"] == "data"
    assert "checksum/config" in template_meta["annotations"]
    assert template_meta["labels"]["team"] == "data"
    pdb = only(manifests, "PodDisruptionBudget")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": labels}}
    monitor = only(manifests, "ServiceMonitor")
    service = only(manifests, "Service")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["streaming"]}
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert service["spec"]["ports"][0]["port"] == 80


def test_config_change_rolls_the_pods(helm: Path) -> None:
    def checksum(*args: str) -> str:
        deployment = only(render(helm, *args), "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum() != checksum("--set", "config.group_id=other")


# --- sidecar mode through the named templates ---------------------------------------------------------


def sidecar_app(helm: Path, tmp_path: Path) -> list[Manifest]:
    """The example application chart, with this chart as its dependency and the sidecar values."""
    app = tmp_path / "example-app"
    shutil.copytree(EXAMPLE_APP, app)
    shutil.copytree(CHART, app / "charts" / "tabletopic")
    app_values = tmp_path / "values.yaml"
    app_values.write_text(yaml.safe_dump({"tabletopic": yaml.safe_load(SIDECAR_VALUES.read_text())}))
    return render(helm, "-f", str(app_values), chart=app)


def test_sidecar_example_is_what_the_named_templates_render(helm: Path, tmp_path: Path) -> None:
    rendered = only(sidecar_app(helm, tmp_path), "Deployment")
    example = yaml.safe_load(SIDECAR_POD.read_text())
    assert example == rendered, (
        f"{SIDECAR_POD.relative_to(ROOT)} is stale; the named templates now render:\n{yaml.safe_dump(rendered)}"
    )


def test_sidecar_app_is_valid_and_keeps_its_own_container(helm: Path, kubeconform: list[str], tmp_path: Path) -> None:
    manifests = sidecar_app(helm, tmp_path)
    report = validate(kubeconform, manifests, tmp_path)
    assert report["returncode"] == 0, report["resources"]
    pod = only(manifests, "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["app", "tabletopic"]
    given = yaml.safe_load(SIDECAR_VALUES.read_text())
    assert container(pod)["envFrom"] == [{"secretRef": {"name": given["existingSecret"]}}]
    assert container(pod)["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": given["config"]["http"]["port"]}
    assert pod["serviceAccountName"] == given["serviceAccount"]["name"]


def _pod_spec(helm: Path, name: str, manifests: list[Manifest]) -> dict[str, Any]:
    """The pod that runs tabletopic: the chart's Deployment, or in sidecar mode the example application's
    (test_sidecar_example_is_what_the_named_templates_render keeps that one current)."""
    workload = yaml.safe_load(SIDECAR_POD.read_text()) if name == "sidecar" else only(manifests, "Deployment")
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def notes(helm: Path, tmp_path: Path, *args: str) -> str:
    """NOTES.txt as `helm install` prints it (helm template leaves it out, so render it as a template)."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "NOTES.txt").rename(chart / "NOTES.tpl")
    (chart / "templates" / "notes.yaml").write_text('notes: {{ tpl (.Files.Get "NOTES.tpl") . | toJson }}\n')
    result = template(helm, *args, "--show-only", "templates/notes.yaml", chart=chart)
    assert result.returncode == 0, result.stderr
    text: str = yaml.safe_load(result.stdout)["notes"]
    return text


def test_sidecar_notes_show_the_container_to_add(helm: Path, tmp_path: Path) -> None:
    text = notes(helm, tmp_path, "-f", str(SIDECAR_VALUES))
    snippet = yaml.safe_load(text[text.index("      containers:"):text.index("A chart that depends")])
    pod = yaml.safe_load(SIDECAR_POD.read_text())["spec"]["template"]["spec"]
    assert snippet["containers"] == [container(pod)]
    assert snippet["volumes"] == pod["volumes"]
    assert snippet["serviceAccountName"] == pod["serviceAccountName"]
    assert "terminationGracePeriodSeconds to 30" in text


def test_deployment_notes(helm: Path, tmp_path: Path) -> None:
    text = notes(helm, tmp_path)
    assert "1 replica(s) of Deployment tt-tabletopic" in text
    assert "port-forward deploy/tt-tabletopic 8080" in text


# --- secrets stay out of the ConfigMap, the image is pinned, the network is closed ---------------------

SECRET_VALUE = "S3cr3t-Passw0rd!"


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("config.kafka.sasl\\.password", "config.kafka.sasl.password"),
        ("config.kafka.ssl\\.key\\.password", "config.kafka.ssl.key.password"),
        ("config.kafka.sasl\\.jaas\\.config", "config.kafka.sasl.jaas.config"),
        ("config.kafka.sasl\\.oauthbearer\\.client\\.secret", "config.kafka.sasl.oauthbearer.client.secret"),
        ("config.schema_registry.properties.basic\\.auth\\.user\\.info",
         "config.schema_registry.properties.basic.auth.user.info"),
        ("config.catalog.s3\\.secret-access-key", "config.catalog.s3.secret-access-key"),
        ("config.catalog.s3\\.access-key-id", "config.catalog.s3.access-key-id"),
        ("config.catalog.s3\\.session-token", "config.catalog.s3.session-token"),
        ("config.catalog.adls\\.account-key", "config.catalog.adls.account-key"),
        ("config.catalog.adls\\.connection-string", "config.catalog.adls.connection-string"),
        ("config.catalog.credential", "config.catalog.credential"),
        ("config.catalog.token", "config.catalog.token"),
        ("config.tables[0].properties.password", "config.tables[0].properties.password"),
    ],
)
def test_template_refuses_a_literal_secret_in_config(helm: Path, setting: str, key: str) -> None:
    table = ["--set-string", "config.tables[0].table=shop.orders", "--set-string", "config.tables[0].topic=orders"]
    result = template(helm, *(table if setting.startswith("config.tables") else []),
                      "--set-string", f"{setting}={SECRET_VALUE}")
    assert result.returncode != 0
    assert f"{key} looks like a secret and holds a literal value" in result.stderr
    assert "${env:KEY}" in result.stderr and "existingSecret" in result.stderr
    assert SECRET_VALUE not in result.stderr  # the message names the key, never the value


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://tabletopic:{SECRET_VALUE}@db:5432/catalog",
        f"https://iceberg-rest:8181/?token={SECRET_VALUE}",
        f"https://iceberg-rest:8181/?a=1&X-Amz-Signature={SECRET_VALUE}&sig={SECRET_VALUE}",
    ],
)
def test_template_refuses_a_literal_secret_in_a_url(helm: Path, url: str) -> None:
    result = template(helm, "--set-string", f"config.catalog.uri={url}")
    assert result.returncode != 0
    assert "config.catalog.uri holds a URL with a literal" in result.stderr
    assert SECRET_VALUE not in result.stderr


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("config.kafka.sasl\\.password", "${env:KAFKA_SASL_PASSWORD}"),
        ("config.kafka.sasl\\.jaas\\.config",
         'PlainLoginModule required username="tabletopic" password="${file:/etc/tabletopic/secrets/P}";'),
        ("config.catalog.uri", "postgresql://tabletopic:${env:DB_PASSWORD}@db:5432/catalog"),
        ("config.catalog.uri", "https://iceberg-rest:8181/?token=${env:TOKEN}"),
        ("config.catalog.uri", "http://user@iceberg-rest:8181/catalog"),
        # Secret-sounding words that are not the last one: a URL, a path, a switch.
        ("config.kafka.sasl\\.oauthbearer\\.token\\.endpoint\\.url", "https://idp.example.com/oauth2/token"),
        ("config.kafka.ssl\\.key\\.location", "/etc/tabletopic/secrets/client.key"),
        ("config.catalog.token-refresh-enabled", "true"),
        ("config.kafka.sasl\\.password", ""),
    ],
)
def test_references_and_harmless_keys_render(helm: Path, setting: str, value: str) -> None:
    config = rendered_config(render(helm, "--set-string", f"{setting}={value}"))
    assert value in yaml.safe_dump(config, width=1000) or value == ""


def test_an_escaped_reference_is_a_literal(helm: Path) -> None:
    """`$${env:X}` is the literal text ${env:X} to tabletopic: no reference, so refused."""
    result = template(helm, "--set-string", "config.kafka.sasl\\.password=$${env:X}")
    assert result.returncode != 0
    assert "config.kafka.sasl.password looks like a secret" in result.stderr


DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize("name", ["default", "deployment-full"])
def test_image_digest_pins_the_image(helm: Path, name: str) -> None:
    repository = values(name)["image"]["repository"]
    pod = only(render(helm, "-f", str(CASES[name]), "--set", f"image.digest={DIGEST}"),
               "Deployment")["spec"]["template"]["spec"]
    assert container(pod)["image"] == f"{repository}@{DIGEST}"  # the tag, if any, is ignored


def test_image_digest_pins_the_sidecar(helm: Path, tmp_path: Path) -> None:
    text = notes(helm, tmp_path, "-f", str(SIDECAR_VALUES), "--set", f"image.digest={DIGEST}")
    assert f"image: tabletopic@{DIGEST}" in text


@pytest.mark.parametrize("digest", ["sha256:abc", "0123456789abcdef" * 4, "sha256:" + "0123456789ABCDEF" * 4])
def test_template_refuses_a_malformed_digest(helm: Path, digest: str) -> None:
    result = template(helm, "--set-string", f"image.digest={digest}")
    assert result.returncode != 0
    assert "image.digest must be sha256: and 64 lowercase hex digits" in result.stderr


def test_network_policy_is_off_by_default(helm: Path) -> None:
    assert "NetworkPolicy" not in kinds(rendered(helm, "default"))


def test_network_policy_lets_only_the_given_peers_reach_the_http_port(helm: Path) -> None:
    given = values("deployment-full")
    manifests = rendered(helm, "deployment-full")
    policy = only(manifests, "NetworkPolicy")["spec"]
    deployment = only(manifests, "Deployment")
    assert policy["podSelector"] == {"matchLabels": deployment["spec"]["selector"]["matchLabels"]}
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [{
        "from": given["networkPolicy"]["ingressFrom"],
        "ports": [{"port": given["config"]["http"]["port"], "protocol": "TCP"}],
    }]
    dns = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    assert policy["egress"] == [*given["networkPolicy"]["egress"], dns]


def test_network_policy_without_peers_lets_nothing_in_and_leaves_egress_open(helm: Path, kubeconform: list[str],
                                                                               tmp_path: Path) -> None:
    manifests = render(helm, "--set", "networkPolicy.enabled=true")
    policy = only(manifests, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["ingress"] == []
    assert "egress" not in policy
    assert validate(kubeconform, manifests, tmp_path)["returncode"] == 0


def test_network_policy_egress_without_dns(helm: Path) -> None:
    manifests = render(helm, "-f", str(CASES["deployment-full"]), "--set", "networkPolicy.allowDNS=false")
    assert only(manifests, "NetworkPolicy")["spec"]["egress"] == values("deployment-full")["networkPolicy"]["egress"]


def test_sidecar_mode_renders_no_network_policy(helm: Path) -> None:
    """The policy would select the application's pods: the application owns that."""
    manifests = render(helm, "-f", str(CASES["deployment-full"]), "--set", "mode=sidecar")
    assert "NetworkPolicy" not in kinds(manifests)


def test_the_metrics_service_can_stay_off(helm: Path) -> None:
    manifests = render(helm, "--set", "service.enabled=false")
    assert kinds(manifests) == ["ConfigMap", "Deployment", "ServiceAccount"]


def test_sidecar_notes_warn_that_the_application_shares_the_service_account(helm: Path, tmp_path: Path) -> None:
    text = notes(helm, tmp_path, "-f", str(SIDECAR_VALUES))
    assert "every container of the pod, your application's too, runs as ServiceAccount\norders-app" in text
    assert "IAM role" in text


# --- extra volumes, init containers, annotations, common labels -----------------------------------------


def test_extra_volumes_mounts_and_init_containers(helm: Path) -> None:
    given = values("deployment-full")
    pod = only(rendered(helm, "deployment-full"), "Deployment")["spec"]["template"]["spec"]
    assert pod["initContainers"] == given["initContainers"]
    for volume in given["extraVolumes"]:
        assert volume in pod["volumes"]
    mounts = container(pod)["volumeMounts"]
    for mount in given["extraVolumeMounts"]:
        assert mount in mounts
    # The chart's own volumes and mounts stay.
    assert {"tabletopic-config", "tabletopic-tmp", "tabletopic-secrets"} <= {v["name"] for v in pod["volumes"]}
    assert {"/etc/tabletopic/config.yaml", "/tmp"} <= {m["mountPath"] for m in mounts}


def test_nothing_extra_by_default(helm: Path) -> None:
    pod = only(rendered(helm, "default"), "Deployment")["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert [v["name"] for v in pod["volumes"]] == ["tabletopic-config", "tabletopic-tmp"]
    assert [m["name"] for m in container(pod)["volumeMounts"]] == ["tabletopic-config", "tabletopic-tmp"]


def test_extra_volumes_come_with_the_sidecar_templates(helm: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({k: values("deployment-full")[k] for k in ("extraVolumes", "extraVolumeMounts")}))
    text = notes(helm, tmp_path, "-f", str(SIDECAR_VALUES), "-f", str(extra))
    snippet = yaml.safe_load(text[text.index("      containers:"):text.index("A chart that depends")])
    assert {"name": "kafka-ca", "configMap": {"name": "kafka-ca"}} in snippet["volumes"]
    assert {"name": "kafka-ca", "mountPath": "/etc/tabletopic/ca", "readOnly": True} in \
        snippet["containers"][0]["volumeMounts"]


def test_pod_annotations(helm: Path) -> None:
    annotations = only(render(helm, "--set", "podAnnotations.example\\.com/owner=data"),
                       "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["example.com/owner"] == "data"
    assert "checksum/config" in annotations


@pytest.mark.parametrize("name", list(CASES))
def test_common_labels_are_on_every_object_and_off_the_selectors(helm: Path, name: str) -> None:
    manifests = render(helm, "-f", str(CASES[name]), "--set", "commonLabels.example\\.com/owner=data",
                       "--set", "serviceAccount.create=true", "--set", "podDisruptionBudget.enabled=true")
    assert len(manifests) >= 2
    for manifest in manifests:
        assert manifest["metadata"]["labels"]["example.com/owner"] == "data", manifest["kind"]
    for deployment in (m for m in manifests if m["kind"] == "Deployment"):
        assert deployment["spec"]["template"]["metadata"]["labels"]["example.com/owner"] == "data"
        assert "example.com/owner" not in deployment["spec"]["selector"]["matchLabels"]
    for selecting in (m for m in manifests if m["kind"] in ("Service", "PodDisruptionBudget", "NetworkPolicy")):
        assert "example.com/owner" not in yaml.safe_dump(selecting["spec"])


def test_full_values_set_common_labels(helm: Path) -> None:
    manifests = rendered(helm, "deployment-full")
    assert {m["metadata"]["labels"]["example.com/cost-centre"] for m in manifests} == {"streaming"}


# --- values.schema.json: helm refuses what tabletopic or the chart would not take ---------------------


@pytest.mark.parametrize(
    ("values_text", "message"),
    [
        ("imagee:\n  repository: x\n", "additional properties 'imagee' not allowed"),
        ("image:\n  tagg: x\n", "at '/image': additional properties 'tagg' not allowed"),
        ("config:\n  commit:\n    interval_second: 5\n",
         "at '/config/commit': additional properties 'interval_second' not allowed"),
        ("config:\n  wrokers: 2\n", "at '/config': additional properties 'wrokers' not allowed"),
        ("config:\n  http:\n    port: 70000\n", "at '/config/http/port'"),
        ("config:\n  tables:\n    - table: shop.orders\n      topic: orders\n      formatt: json\n",
         "additional properties 'formatt' not allowed"),
        ("service:\n  prot: 80\n", "at '/service': additional properties 'prot' not allowed"),
        ("readinessProbe:\n  periodSecond: 5\n", "additional properties 'periodSecond' not allowed"),
        ("extraVolumeMounts:\n  - name: x\n", "missing property 'mountPath'"),
        ("commonLabels:\n  enabled: true\n", "at '/commonLabels/enabled': got boolean, want string"),
    ],
)
def test_the_schema_refuses_typos(helm: Path, tmp_path: Path, values_text: str, message: str) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(values_text)
    rendered_ = template(helm, "-f", str(path))
    assert rendered_.returncode != 0
    assert "don't meet the specifications of the schema" in rendered_.stderr
    assert message in rendered_.stderr
    lint = subprocess.run([str(helm), "lint", "--strict", "--kube-version", k8s_tools.KUBERNETES_VERSION,
                           str(CHART), "-f", str(path)], capture_output=True, text=True, check=False)
    assert lint.returncode != 0
    assert message in lint.stdout + lint.stderr


@pytest.mark.parametrize(
    "setting",
    [
        "config.commit.interval_seconds=${env:COMMIT_INTERVAL}",
        "config.maintenance.enabled=${file:/etc/tabletopic/secrets/MAINTAIN}",
        "config.log_level=${env:LOG_LEVEL}",
        "config.kafka.sasl\\.password=${env:KAFKA_SASL_PASSWORD}",
        "config.catalog.token=${env:CATALOG_TOKEN}",
    ],
)
def test_the_schema_takes_a_reference_wherever_tabletopic_does(helm: Path, setting: str) -> None:
    rendered_config(render(helm, "--set-string", setting))


def test_a_parent_chart_passes_the_schema(helm: Path, tmp_path: Path) -> None:
    """Helm hands a subchart `global:` too; the schema must let it through."""
    assert only(sidecar_app(helm, tmp_path), "Deployment")
