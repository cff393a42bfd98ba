"""k8s/ and the Dockerfile, offline: every manifest against the Kubernetes schemas (kubernetes-validate, strict)
and the KubeRay RayJob schema (tests/data/kuberay), unknown fields failing; references between manifests; the
security rules (non-root, resources, no plaintext secrets); and the kustomize build where kubectl is installed."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from importlib.metadata import metadata, version
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import ray
import yaml
from referencing import Registry, Resource

from ragsweep.search.config import load_config
from tests.conftest import REPO

K8S = REPO / "k8s"
K8S_VERSION = "1.30"  # the oldest Kubernetes we support: a field newer than this fails
KUBERAY_SCHEMA = json.loads((REPO / "tests/data/kuberay/rayjob-ray-v1.json").read_text())
IMAGE_ROOT = "/opt/ragsweep"  # where the Dockerfile puts the project


def _kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def _docs() -> list[tuple[str, dict[str, Any]]]:
    return [(name, doc) for name in _kustomization()["resources"]
            for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in _docs() if d["kind"] == kind]


def _k8s_definitions() -> Resource:
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    folder = next(p for p in sorted(root.iterdir()) if p.name.startswith(f"v{K8S_VERSION}.")
                  and p.name.endswith("-local-strict"))
    return Resource.from_contents(json.loads((folder / "_definitions.json").read_text()))


def _validate(doc: dict[str, Any]) -> None:
    """Raise on anything the API server (or KubeRay) would reject, and on fields it would silently drop."""
    if doc["apiVersion"] == "ray.io/v1":
        registry = Registry().with_resource("/api/_definitions.json", _k8s_definitions())
        jsonschema.validators.Draft202012Validator(KUBERAY_SCHEMA, registry=registry).validate(doc)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for _, d in _docs():
        if d["kind"] in ("Deployment", "StatefulSet"):
            specs.append((d["metadata"]["name"], d["spec"]["template"]["spec"]))
        elif d["kind"] == "RayJob":
            cluster = d["spec"]["rayClusterSpec"]
            specs.append(("ray-head", cluster["headGroupSpec"]["template"]["spec"]))
            specs += [(f"ray-{g['groupName']}", g["template"]["spec"]) for g in cluster["workerGroupSpecs"]]
    return specs


@pytest.mark.parametrize("name_doc", _docs(), ids=lambda nd: f"{nd[0]}:{nd[1]['kind']}/{nd[1]['metadata']['name']}")
def test_every_manifest_passes_its_schema_strictly(name_doc: tuple[str, dict[str, Any]]) -> None:
    _validate(name_doc[1])


def _typo(kind: str, path: list[Any], key: str) -> dict[str, Any]:
    doc = copy.deepcopy(next(d for d in _by_kind(kind)))
    node = doc
    for p in path:
        node = node[p]
    node[key] = "x"
    return doc


@pytest.mark.parametrize(("kind", "path", "key"), [
    ("Deployment", ["spec", "template", "spec", "containers", 0], "imagePullPolicyy"),
    ("StatefulSet", ["spec"], "volumeClaimTemplate"),
    ("RayJob", ["spec"], "shutdownAfterJobFinish"),
    ("RayJob", ["spec", "rayClusterSpec", "workerGroupSpecs", 0], "maxReplica"),
    ("RayJob", ["spec", "rayClusterSpec", "headGroupSpec", "template", "spec", "containers", 0], "resource"),
])
def test_unknown_fields_fail(kind: str, path: list[Any], key: str) -> None:
    with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)) as e:
        _validate(_typo(kind, path, key))
    assert key in str(e.value)


def test_kustomization_lists_every_manifest_and_its_inputs_exist() -> None:
    k = _kustomization()
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "experiment.yaml"}
    assert set(k["resources"]) == manifests
    for gen in k["configMapGenerator"]:
        for f in gen.get("files", []):
            assert (K8S / f).is_file(), f
    # the database password comes from a file that is never committed
    (secret,) = k["secretGenerator"]
    assert secret["envs"] == ["postgres.env"]
    assert "k8s/postgres.env" in (REPO / ".gitignore").read_text().splitlines()
    tracked = subprocess.run(["git", "ls-files", "k8s/postgres.env"], cwd=REPO, capture_output=True, text=True)
    assert tracked.stdout.strip() == ""
    assert not _by_kind("Secret"), "secrets come from secretGenerator, never a manifest"


def test_references_between_manifests_resolve() -> None:
    k = _kustomization()
    config_maps = {g["name"] for g in k["configMapGenerator"]}
    secrets = {g["name"] for g in k["secretGenerator"]}
    services = {s["metadata"]["name"]: s for s in _by_kind("Service")}
    pvcs = {p["metadata"]["name"] for p in _by_kind("PersistentVolumeClaim")}
    workloads = _by_kind("Deployment") + _by_kind("StatefulSet")
    for svc in services.values():
        selector = svc["spec"]["selector"]
        assert any(selector.items() <= w["spec"]["template"]["metadata"]["labels"].items() for w in workloads), svc
    for sts in _by_kind("StatefulSet"):
        assert sts["spec"]["serviceName"] in services
    for name, spec in _pod_specs():
        for v in spec.get("volumes", []):
            if "configMap" in v:
                assert v["configMap"]["name"] in config_maps, (name, v)
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in pvcs, (name, v)
        for c in spec["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    assert ref["secretKeyRef"]["name"] in secrets, (name, e)
                if "configMapKeyRef" in ref:
                    assert ref["configMapKeyRef"]["name"] in config_maps, (name, e)
            for src in c.get("envFrom", []):
                if "secretRef" in src and src["secretRef"]["name"] not in secrets:
                    assert src["secretRef"].get("optional") is True, (name, src)


SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|API_KEY", re.I)


def test_containers_run_as_non_root_with_resources_and_no_plaintext_secrets() -> None:
    specs = _pod_specs()
    assert {n for n, _ in specs} == {"postgres", "mlflow", "qdrant", "ray-head", "ray-gpu"}
    for name, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0, name
        for c in spec["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][part]), (name, c["name"], part)
            for e in c.get("env", []):
                assert not (SECRETISH.search(e["name"]) and "value" in e), (name, e["name"])
            for arg in c.get("args", []) + c.get("command", []):
                assert not re.search(r"://[^:/@]+:[^$@][^@]*@", arg), (name, "a password written into an argument")
    (gpu,) = [s for n, s in specs if n == "ray-gpu"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


def _mlflow_args() -> list[str]:
    (deploy,) = [d for d in _by_kind("Deployment") if d["metadata"]["name"] == "mlflow"]
    return deploy["spec"]["template"]["spec"]["containers"][0]["args"]


def test_mlflow_server_uses_postgres_and_admits_its_service_names() -> None:
    args = dict(a.removeprefix("--").split("=", 1) for a in _mlflow_args())
    assert args["backend-store-uri"].startswith("postgresql://mlflow:$(POSTGRES_PASSWORD)@postgres:5432/")
    assert args["artifacts-destination"] == "$(ARTIFACTS_DESTINATION)"
    allowed = args["allowed-hosts"].split(",")
    ns = _kustomization()["namespace"]
    for host in ("mlflow", f"mlflow.{ns}.svc", f"mlflow.{ns}.svc.cluster.local"):
        assert host in allowed and f"{host}:5000" in allowed
    (sts,) = [s for s in _by_kind("StatefulSet") if s["metadata"]["name"] == "postgres"]
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]


def test_rayjob_runs_the_search_and_cleans_up() -> None:
    (job,) = _by_kind("RayJob")
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    assert spec["entrypoint"] == f"python {IMAGE_ROOT}/search/run.py --config /etc/ragsweep/experiment.yaml"
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__  # the images install the same Ray as constraints-cpu.txt
    assert cluster["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"  # a CPU head
    (gpu,) = cluster["workerGroupSpecs"]
    assert gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
    images = {c["image"] for _, s in _pod_specs() for c in s["containers"]}
    assert {"ragsweep-cpu", "ragsweep-gpu"} <= images
    assert {i["name"] for i in _kustomization()["images"]} == {"ragsweep-cpu", "ragsweep-gpu"}


def test_experiment_config_is_valid_and_points_at_the_services(tmp_path: Path) -> None:
    text = (K8S / "experiment.yaml").read_text().replace(IMAGE_ROOT, str(REPO))
    (tmp_path / "experiment.yaml").write_text(text)
    cfg = load_config(tmp_path / "experiment.yaml")
    services = {s["metadata"]["name"]: {p["port"] for p in s["spec"]["ports"]} for s in _by_kind("Service")}
    assert cfg.mlflow.tracking_uri == "http://mlflow:5000" and 5000 in services["mlflow"]
    assert cfg.pipeline.qdrant_url == "http://qdrant:6333" and 6333 in services["qdrant"]
    assert cfg.llm.generator.engine == "vllm"


def test_qdrant_server_matches_the_client_version() -> None:
    (sts,) = [s for s in _by_kind("StatefulSet") if s["metadata"]["name"] == "qdrant"]
    tag = sts["spec"]["template"]["spec"]["containers"][0]["image"].split(":v", 1)[1]
    assert tag.split(".")[:2] == version("qdrant-client").split(".")[:2]


def test_dockerfile_builds_both_variants_as_a_non_root_user() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^USER 1000$", text, re.M)
    assert "ARG VARIANT=cpu" in text and '"$VARIANT" = "gpu"' in text
    assert "wget" in text  # KubeRay's probes call wget inside the Ray containers
    assert "WORKDIR /opt/ragsweep" in text and "COPY search ./search" in text
    extras = metadata("ragsweep").get_all("Provides-Extra")
    for variant in ("cpu,cluster,tracking-server", "gpu,cluster,tracking-server"):
        assert variant in text
        assert set(variant.split(",")) <= set(extras)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed: the kustomize build is not run")
def test_kustomize_build(tmp_path: Path) -> None:
    shutil.copytree(K8S, tmp_path / "k8s")
    (tmp_path / "k8s" / "postgres.env").write_text("POSTGRES_PASSWORD=0123456789abcdef\n")
    out = subprocess.run(["kubectl", "kustomize", str(tmp_path / "k8s")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert all(d["metadata"].get("namespace") == "ragsweep" for d in docs if d["kind"] != "Namespace")
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    env = {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
    (job,) = [d for d in docs if d["kind"] == "RayJob"]
    groups = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    images = [g["template"]["spec"]["containers"][0]["image"] for g in groups]
    assert images == ["ghcr.io/your-org/ragsweep:0.1.0-gpu"]
    for d in docs:  # what kustomize emits is still valid, anchors expanded and names rewritten
        _validate(d)
