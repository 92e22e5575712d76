"""The chart rendered by a real Helm engine (Helm's Go SDK via helm-python-sdk) and checked against the
Kubernetes schemas (kubernetes-validate): security context, probes, GPUs, hooks and secrets."""

from __future__ import annotations

import json
import re

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.contract import CHART, CONTAINER_COMMANDS, REPO, registered_cli_commands

KUBERNETES_VERSION = "1.31.0"
FEATURES = {
    "worker": {"autoscaling": {"keda": {"enabled": True}}},
    "api": {"ingress": {"enabled": True, "ingressClassName": "nginx", "tlsSecretName": "occulta-tls"}},
    "networkPolicy": {"enabled": True, "allowExternal": False},
    "image": {"pullSecrets": ["registry-credentials"]},
}
SECRET_ENV = {
    "OCCULTA_DATABASE_PASSWORD",
    "OCCULTA_REDIS_PASSWORD",
    "OCCULTA_S3_ACCESS_KEY_ID",
    "OCCULTA_S3_SECRET_ACCESS_KEY",
    "OCCULTA_SECRET_KEY",
}


def render(values=None):
    with helm_python.Chart.load(CHART) as chart:
        files = chart.render(values, name="occ", namespace="audits", is_install=True)
    docs = [
        doc
        for name, text in sorted(files.items())
        if not name.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    return docs, files


@pytest.fixture(scope="module")
def default_docs():
    return render()[0]


@pytest.fixture(scope="module")
def feature_docs():
    return render(FEATURES)[0]


def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def workloads(docs):
    """(name, pod spec) of every Deployment and Job."""
    return [
        (d["metadata"]["name"], d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in {"Deployment", "Job"}
    ]


def container(docs, name):
    return by_kind(docs, "Deployment")[f"occ-occulta-{name}"]["spec"]["template"]["spec"]["containers"][0]


def test_values_yaml_validates_against_values_schema():
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(yaml.safe_load((CHART / "values.yaml").read_text()))


@pytest.mark.parametrize(
    "values",
    [
        {"replicas": 3},
        {"externalDatabase": {"password": "hunter2"}},
        {"worker": {"concurrency": 0}},
        {"image": {"pullPolicy": "Sometimes"}},
        {"externalS3": {"existingSecret": ""}},
    ],
    ids=[
        "unknown-top-level-key",
        "plaintext-password",
        "zero-concurrency",
        "bad-pull-policy",
        "no-s3-secret",
    ],
)
def test_helm_refuses_values_the_schema_rejects(values):
    with pytest.raises(helm_python.HelmValuesError):
        render(values)


def test_helm_lint_is_clean_in_strict_mode():
    for values in (None, FEATURES):
        report = helm_python.lint(CHART, values, strict=True, kube_version=f"v{KUBERNETES_VERSION}")
        assert report["errors"] == [] and report["messages"] == [], report


def test_the_chart_icon_is_an_image_this_repository_holds():
    """Artifact Hub and `helm show` fetch the icon from the default branch: the file must be committed."""
    from PIL import Image

    icon = yaml.safe_load((CHART / "Chart.yaml").read_text())["icon"]
    raw = "https://raw.githubusercontent.com/occulta/occulta/main/"
    assert icon.startswith(raw), icon
    path = REPO / icon.removeprefix(raw)
    assert path.is_file(), f"the chart's icon {icon} names {path}, which is missing"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width == image.height >= 64, (image.format, image.size)


@pytest.mark.parametrize("features", [False, True], ids=["defaults", "keda-ingress-netpol"])
def test_rendered_manifests_are_valid_kubernetes_objects(features, default_docs, feature_docs):
    docs = feature_docs if features else default_docs
    for doc in docs:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: no schema in kubernetes-validate; checked in test_keda_* below
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_every_pod_is_hardened(feature_docs):
    pods = workloads(feature_docs)
    assert {name for name, _ in pods} == {
        "occ-occulta-api",
        "occ-occulta-worker",
        "occ-occulta-beat",
        "occ-occulta-migrate-1",
    }
    for name, pod in pods:
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}], name
        empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for c in pod["containers"]:
            ctx = c["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False, name
            assert ctx["capabilities"]["drop"] == ["ALL"] and ctx["runAsNonRoot"] is True, name
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert mounts["/tmp"] in empty_dirs and mounts["/var/lib/occulta"] in empty_dirs, name
            env = {e["name"]: e for e in c["env"]}
            assert (
                env["OCCULTA_DATA_DIR"]["value"] == "/var/lib/occulta"
                and env["HF_HUB_OFFLINE"]["value"] == "1"
            )
            assert c["args"][0] in CONTAINER_COMMANDS, name


def test_service_account_mounts_no_token(default_docs):
    (account,) = by_kind(default_docs, "ServiceAccount").values()
    assert account["automountServiceAccountToken"] is False
    for _, pod in workloads(default_docs):
        if pod["serviceAccountName"] != "default":  # the pre-install hook runs before the account exists
            assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_api_has_startup_liveness_and_readiness_probes(default_docs):
    api = container(default_docs, "api")
    assert api["args"] == ["api", "--host", "0.0.0.0", "--port", "8000"]
    assert api["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    probes = {kind: api[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["startupProbe"] == probes["livenessProbe"] == {"path": "/livez", "port": "http"}
    assert probes["readinessProbe"] == {"path": "/readyz", "port": "http"}
    assert by_kind(default_docs, "Service")["occ-occulta-api"]["spec"]["ports"][0]["targetPort"] == "http"


def test_worker_requests_gpus_and_runs_one_celery_child_per_gpu():
    docs, _ = render({"worker": {"gpu": {"count": 2}, "concurrency": 2, "nodeSelector": {"gpu": "a100"}}})
    worker = container(docs, "worker")
    assert worker["args"] == ["worker"]
    assert worker["resources"]["requests"]["nvidia.com/gpu"] == 2
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 2
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["OCCULTA_WORKER_CONCURRENCY"] == "2" and env["OCCULTA_DEVICE"] == "cuda"
    pod = by_kind(docs, "Deployment")["occ-occulta-worker"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


def test_worker_without_gpus_requests_none_and_runs_on_cpu():
    worker = container(render({"worker": {"gpu": {"count": 0}}})[0], "worker")
    assert "nvidia.com/gpu" not in worker["resources"]["limits"]
    assert {e["name"]: e.get("value") for e in worker["env"]}["OCCULTA_DEVICE"] == "cpu"


def test_migration_job_is_a_pre_install_pre_upgrade_hook(default_docs):
    (job,) = by_kind(default_docs, "Job").values()
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert set(annotations["helm.sh/hook-delete-policy"].split(",")) == {
        "before-hook-creation",
        "hook-succeeded",
    }
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_credentials_come_only_from_existing_secrets(feature_docs):
    assert not by_kind(feature_docs, "Secret"), "the chart must never hold a credential"
    for name, pod in workloads(feature_docs):
        env = pod["containers"][0]["env"]
        names = [e["name"] for e in env]
        for entry in env:
            if entry["name"] in SECRET_ENV:
                assert set(entry) == {"name", "valueFrom"} and "secretKeyRef" in entry["valueFrom"], name
            for used in re.findall(r"\$\((\w+)\)", entry.get("value", "")):
                # Kubernetes expands $(VAR) only for variables declared earlier in the list.
                assert names.index(used) < names.index(entry["name"]), f"{name}: {used} after {entry['name']}"
        urls = {e["name"]: e["value"] for e in env if e["name"].endswith("_URL")}
        assert "$(OCCULTA_DATABASE_PASSWORD)@" in urls["OCCULTA_DATABASE_URL"]
        assert urls["OCCULTA_BROKER_URL"].startswith("redis://:$(OCCULTA_REDIS_PASSWORD)@")


def test_secret_names_and_keys_follow_values():
    values = {
        "externalS3": {"existingSecret": "s3-creds", "existingSecretAccessKeyIdKey": "AWS_ACCESS_KEY_ID"}
    }
    api = container(render(values)[0], "api")
    ref = next(e for e in api["env"] if e["name"] == "OCCULTA_S3_ACCESS_KEY_ID")["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}


def test_keda_scales_workers_on_the_celery_queue_and_the_tenants_lines(feature_docs):
    (scaled,) = by_kind(feature_docs, "ScaledObject").values()
    auths = by_kind(feature_docs, "TriggerAuthentication")
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "occ-occulta-worker",
    }
    assert scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    triggers = {t["type"]: t for t in scaled["spec"]["triggers"]}
    assert set(triggers) == {"redis", "postgresql"}
    for trigger in triggers.values():
        assert all(isinstance(v, str) for v in trigger["metadata"].values()), (
            "KEDA metadata values are strings"
        )
        assert trigger["authenticationRef"]["name"] in auths
    assert triggers["redis"]["metadata"]["listName"] == "celery"
    # Audits waiting for their tenant's turn are not on the Celery list: KEDA counts them too.
    waiting = triggers["postgresql"]["metadata"]
    assert "dispatched_at IS NULL" in waiting["query"] and waiting["dbName"] == "occulta"
    secrets = {a["spec"]["secretTargetRef"][0]["name"] for a in auths.values()}
    assert secrets == {"occulta-redis", "occulta-database"}
    # KEDA owns the replica count; a fixed one would fight it on every upgrade.
    assert "replicas" not in by_kind(feature_docs, "Deployment")["occ-occulta-worker"]["spec"]


def _env(docs, name):
    return {e["name"]: e.get("value") for e in container(docs, name)["env"]}


def test_fair_dispatch_settings_reach_every_pod(default_docs, feature_docs):
    # Slots default to the fleet's size: worker pods x concurrency, at KEDA's maximum when it scales.
    assert _env(default_docs, "api")["OCCULTA_DISPATCH_SLOTS"] == "1"
    assert _env(feature_docs, "beat")["OCCULTA_DISPATCH_SLOTS"] == "8"
    assert _env(default_docs, "api")["OCCULTA_TENANT_MAX_ACTIVE"] == "1000"
    assert "OCCULTA_WORKER_GPU_MEMORY_GIB" not in _env(default_docs, "api")
    docs = render({"fairness": {"dispatchSlots": 12, "tenantMaxActive": 50, "workerGpuMemoryGiB": 79.6}})[0]
    env = _env(docs, "api")
    assert (env["OCCULTA_DISPATCH_SLOTS"], env["OCCULTA_TENANT_MAX_ACTIVE"]) == ("12", "50")
    assert env["OCCULTA_WORKER_GPU_MEMORY_GIB"] == "79.6"


def test_optional_resources_are_off_by_default(default_docs):
    kinds = {d["kind"] for d in default_docs}
    assert not kinds & {"ScaledObject", "TriggerAuthentication", "Ingress", "NetworkPolicy"}


def test_ingress_routes_the_api_service_with_tls(feature_docs):
    (ingress,) = by_kind(feature_docs, "Ingress").values()
    assert ingress["spec"]["tls"] == [{"hosts": ["occulta.local"], "secretName": "occulta-tls"}]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "occ-occulta-api", "port": {"name": "http"}}


def test_network_policies_admit_only_api_traffic(feature_docs):
    policies = by_kind(feature_docs, "NetworkPolicy")
    assert len(policies) == 4
    for name, policy in policies.items():
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        if not name.endswith("-api"):
            assert policy["spec"]["ingress"] == [], name
    api_from = policies["occ-occulta-api"]["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": {"occulta-api-client": "true"}}} in api_from


def test_disruption_budgets_cover_api_and_workers(default_docs):
    budgets = by_kind(default_docs, "PodDisruptionBudget")
    assert set(budgets) == {"occ-occulta-api", "occ-occulta-worker"}
    for name, budget in budgets.items():
        assert budget["spec"]["maxUnavailable"] == 1
        assert (
            budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == name.rsplit("-", 1)[1]
        )


def test_beat_is_a_single_replica_that_never_overlaps(default_docs):
    beat = by_kind(default_docs, "Deployment")["occ-occulta-beat"]
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"] == {"type": "Recreate"}
    assert beat["spec"]["template"]["spec"]["containers"][0]["args"] == ["beat"]


def test_notes_name_the_secrets_to_create():
    notes = render()[1]["occulta/templates/NOTES.txt"]
    for secret in ("occulta-database", "occulta-redis", "occulta-s3", "occulta-app"):
        assert secret in notes


def test_chart_commands_exist_in_the_cli_once_registered(feature_docs):
    registered = registered_cli_commands()
    if registered is None:
        pytest.skip("the service commands (api, worker, beat, migrate) are not on this branch yet")
    used = {pod["containers"][0]["args"][0] for _, pod in workloads(feature_docs)}
    assert used <= registered, f"not in `occulta --help`: {sorted(used - registered)}"
