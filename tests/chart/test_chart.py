"""The Helm chart: lint, render, validate every manifest with kubeconform, and check what matters.

helm and kubeconform are built once with Go into the download cache (tabletopic/local/k8s_tools.py);
kubeconform validates against Kubernetes 1.30 schemas and the ServiceMonitor CRD's schema, all
from registries, never the network at test time.
"""

from __future__ import annotations

import json
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
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    return {**defaults, **(yaml.safe_load(CASES[name].read_text()) or {})}


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
    port = values(name)["http"]["port"]
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
def test_config_is_rendered_with_the_chart_owned_keys(helm: Path, name: str) -> None:
    manifests = rendered(helm, name)
    given = values(name)
    config = rendered_config(manifests)
    assert config["shutdown_timeout_seconds"] == given["shutdownTimeoutSeconds"]
    assert config["http"]["port"] == given["http"]["port"]
    assert config["workers"] == given["workers"]
    for key, value in given["config"].items():
        if key != "http":
            assert config[key] == value, key


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
    given = values(name)
    assert config.http.port == given["http"]["port"]
    assert config.shutdown_timeout_seconds == given["shutdownTimeoutSeconds"]
    assert config.kafka["sasl.password"] == "kafka-pass"
    if name == "deployment-full":
        assert config.schema_registry.properties["basic.auth.user.info"] == "user:registry-pass"


@pytest.mark.parametrize("name", list(CASES))
def test_termination_grace_exceeds_the_shutdown_bound(helm: Path, name: str) -> None:
    manifests = rendered(helm, name)
    pod = _pod_spec(helm, name, manifests)
    assert pod["terminationGracePeriodSeconds"] > rendered_config(manifests)["shutdown_timeout_seconds"]


GRACE_TOO_SHORT = "must be greater than shutdownTimeoutSeconds"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["terminationGracePeriodSeconds=20", "shutdownTimeoutSeconds=20"], GRACE_TOO_SHORT),
        (["terminationGracePeriodSeconds=15"], GRACE_TOO_SHORT),
        (["terminationGracePeriodSeconds=29", "shutdownTimeoutSeconds=29.5"], GRACE_TOO_SHORT),
        (["terminationGracePeriodSeconds=22", "workers=2"], "shutdownTimeoutSeconds + 2"),
        (["mode=sidecar", "shutdownTimeoutSeconds=45"], GRACE_TOO_SHORT),
        (["config.shutdown_timeout_seconds=5"], "set shutdownTimeoutSeconds, not config.shutdown_timeout_seconds"),
        (["config.http.port=9999"], "set http.port, not config.http.port"),
        (["mode=daemonset"], "mode must be deployment or sidecar"),
    ],
)
def test_template_refuses_bad_values(helm: Path, settings: list[str], message: str) -> None:
    result = template(helm, *(arg for setting in settings for arg in ("--set", setting)))
    assert result.returncode != 0
    assert message in result.stderr


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
    assert container(pod)["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": given["http"]["port"]}
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
    result = template(helm, "--set-string", f"{setting}={SECRET_VALUE}")
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
        "ports": [{"port": given["http"]["port"], "protocol": "TCP"}],
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
