"""k8s/ and the Dockerfile, offline: every manifest against the Kubernetes schemas (kubernetes-validate, strict)
and the RayJob against KubeRay's real CRDs of v1.3.0 and v1.7.0 (tests/data/kuberay), unknown fields failing;
references between manifests; the security rules (non-root, resources, no plaintext secrets); and the kustomize
build."""

from __future__ import annotations

import copy
import functools
import gzip
import json
import re
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, metadata, version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import ray
import yaml

from ragsweep.search.config import GPU_MEMORY_GB, load_config
from ragsweep.search.serving.gpu_fit import AWS_FAMILY_GPU, GFD_PRODUCT_GPU, gpu_fit, shared_gpu
from tests.conftest import REPO

K8S = REPO / "k8s"
K8S_VERSION = "1.30"  # the oldest Kubernetes we support: a field newer than this fails
K8S_VERSIONS = ("1.30", "1.34", "1.37")  # oldest supported, a recent one, the newest kubernetes-validate knows
CHECKOV = REPO / ".venv-checks" / "bin" / "checkov"  # scripts/install.sh dev puts checkov in its own venv
KUBERAY_CRDS = ("v1.3.0", "v1.7.0")  # the oldest KubeRay docs/kubernetes.md supports and the newest release
IMAGE_ROOT = "/opt/ragsweep"  # where the Dockerfile puts the project


def _kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def _docs() -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, doc)
        for name in _kustomization()["resources"]
        for doc in yaml.safe_load_all((K8S / name).read_text())
        if doc
    ]


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in _docs() if d["kind"] == kind]


def _strict(node: Any) -> Any:
    """A CRD's schema made strict as kubeconform's -strict makes it: an object schema that lists its properties and
    does not preserve unknown fields refuses any other key."""
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if (
            "properties" in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in node
        ):
            node["additionalProperties"] = False
    elif isinstance(node, list):
        node = [_strict(v) for v in node]
    return node


@functools.cache
def _rayjob_schema(kuberay: str) -> dict[str, Any]:
    """The strict ``ray.io/v1`` schema of KubeRay's own RayJob CRD at release ``kuberay``."""
    crd = yaml.safe_load(gzip.decompress((REPO / f"tests/data/kuberay/ray.io_rayjobs-{kuberay}.yaml.gz").read_bytes()))
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return _strict(served["schema"]["openAPIV3Schema"])


def _validate(doc: dict[str, Any], k8s_version: str = K8S_VERSION) -> None:
    """Raise on anything the API server (or KubeRay's CRD, of every supported release) would reject, and on fields
    it would silently drop."""
    if doc["apiVersion"] == "ray.io/v1":
        for kuberay in KUBERAY_CRDS:
            try:
                jsonschema.validators.Draft7Validator(_rayjob_schema(kuberay)).validate(doc)
            except jsonschema.ValidationError as e:
                raise jsonschema.ValidationError(f"KubeRay {kuberay} CRD: {e.message}") from e
    else:
        kubernetes_validate.validate(doc, k8s_version, strict=True)


def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for _, d in _docs():
        if d["kind"] in ("Deployment", "StatefulSet", "Job"):
            specs.append((d["metadata"]["name"], d["spec"]["template"]["spec"]))
        elif d["kind"] == "RayJob":
            cluster = d["spec"]["rayClusterSpec"]
            specs.append(("ray-head", cluster["headGroupSpec"]["template"]["spec"]))
            specs += [(f"ray-{g['groupName']}", g["template"]["spec"]) for g in cluster["workerGroupSpecs"]]
            specs.append(("ray-submitter", d["spec"]["submitterPodTemplate"]["spec"]))
    return specs


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
@pytest.mark.parametrize("name_doc", _docs(), ids=lambda nd: f"{nd[0]}:{nd[1]['kind']}/{nd[1]['metadata']['name']}")
def test_every_manifest_passes_its_schema_strictly(name_doc: tuple[str, dict[str, Any]], k8s_version: str) -> None:
    _validate(name_doc[1], k8s_version)


def _typo(kind: str, path: list[Any], key: str) -> dict[str, Any]:
    doc = copy.deepcopy(next(d for d in _by_kind(kind)))
    node = doc
    for p in path:
        node = node[p]
    node[key] = "x"
    return doc


@pytest.mark.parametrize(
    ("kind", "path", "key"),
    [
        ("Deployment", ["spec", "template", "spec", "containers", 0], "imagePullPolicyy"),
        ("StatefulSet", ["spec"], "volumeClaimTemplate"),
        ("RayJob", ["spec"], "shutdownAfterJobFinish"),
        ("RayJob", ["spec", "rayClusterSpec", "workerGroupSpecs", 0], "maxReplica"),
        ("RayJob", ["spec", "rayClusterSpec", "headGroupSpec", "template", "spec", "containers", 0], "resource"),
    ],
)
def test_unknown_fields_fail(kind: str, path: list[Any], key: str) -> None:
    with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)) as e:
        _validate(_typo(kind, path, key))
    assert key in str(e.value)


def test_kustomization_lists_every_manifest_and_its_inputs_exist() -> None:
    k = _kustomization()
    patches = {p["path"] for p in k["patches"]}
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "experiment.yaml"} - patches
    assert set(k["resources"]) == manifests
    for gen in k["configMapGenerator"]:
        for f in gen.get("files", []):
            assert (K8S / f).is_file(), f
    # the database password and MLflow's account come from files that are never committed
    assert [s["envs"] for s in k["secretGenerator"]] == [["postgres.env"], ["mlflow-auth.env"]]
    for name in ("postgres.env", "mlflow-auth.env"):
        assert f"k8s/{name}" in (REPO / ".gitignore").read_text().splitlines()
        tracked = subprocess.run(["git", "ls-files", f"k8s/{name}"], cwd=REPO, capture_output=True, text=True)
        assert tracked.stdout.strip() == ""
    assert not _by_kind("Secret"), "secrets come from secretGenerator, never a manifest"


def test_references_between_manifests_resolve() -> None:
    k = _kustomization()
    config_maps = {g["name"] for g in k["configMapGenerator"]} | {c["metadata"]["name"] for c in _by_kind("ConfigMap")}
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
            if "secret" in v:  # a Secret the user may add (S3 or hub credentials) is optional
                assert v["secret"]["secretName"] in secrets or v["secret"].get("optional") is True, (name, v)
        for c in spec["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    assert ref["secretKeyRef"]["name"] in secrets, (name, e)
                if "configMapKeyRef" in ref:
                    assert ref["configMapKeyRef"]["name"] in config_maps, (name, e)
                    key = ref["configMapKeyRef"]["key"]
                    literals = {lit.split("=", 1)[0] for g in k["configMapGenerator"] for lit in g.get("literals", [])}
                    assert key in literals or ref["configMapKeyRef"].get("optional") is True, (name, e)
            for src in c.get("envFrom", []):
                if "secretRef" in src and src["secretRef"]["name"] not in secrets:
                    assert src["secretRef"].get("optional") is True, (name, src)


SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|API_KEY", re.I)


def test_containers_run_as_non_root_with_resources_and_no_plaintext_secrets() -> None:
    specs = _pod_specs()
    assert {n for n, _ in specs} == {
        "postgres",
        "mlflow",
        "qdrant",
        "prefetch-models",
        "ray-head",
        "ray-gpu",
        "ray-submitter",
    }
    for name, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in spec["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][part]), (name, c["name"], part)
            for e in c.get("env", []):
                assert not (SECRETISH.search(e["name"]) and "value" in e and not e["name"].endswith("_FILE")), (
                    name,
                    e["name"],
                )
            for arg in c.get("args", []) + c.get("command", []):
                assert not re.search(r"://[^:/@\s]+:[^@\s]+@", arg), (name, "a password written into an argument")
                assert not re.search(r"\$\([A-Z_]*(PASSWORD|TOKEN|SECRET)[A-Z_]*\)", arg), (
                    name,
                    "a secret expanded into an argument",
                )
    (gpu,) = [s for n, s in specs if n == "ray-gpu"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_long_running_containers_have_liveness_and_readiness_probes() -> None:
    for kind in ("Deployment", "StatefulSet"):
        for d in _by_kind(kind):
            for c in d["spec"]["template"]["spec"]["containers"]:
                assert "livenessProbe" in c and "readinessProbe" in c, (d["metadata"]["name"], c["name"])


def _mlflow_container() -> dict[str, Any]:
    (deploy,) = [d for d in _by_kind("Deployment") if d["metadata"]["name"] == "mlflow"]
    return deploy["spec"]["template"]["spec"]["containers"][0]


def test_mlflow_server_authenticates_and_keeps_passwords_off_command_lines() -> None:
    c = _mlflow_container()
    env = {e["name"]: e for e in c["env"]}
    script = " ".join(c["args"])
    assert "--app-name basic-auth" in script and script.split("&&")[-1].strip().startswith("exec mlflow server")
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"] == "postgresql://mlflow@postgres:5432/mlflow"  # libpq: PGPASSWORD
    assert 'PGPASSWORD="$(cat /run/secrets/postgres/POSTGRES_PASSWORD)"' in script
    assert "MLFLOW_AUTH_ADMIN_PASSWORD=" in script and "MLFLOW_FLASK_SERVER_SECRET_KEY=" in script
    (ini,) = [m for m in _by_kind("ConfigMap") if m["metadata"]["name"] == "mlflow-auth-config"]
    assert "default_permission = NO_PERMISSIONS" in ini["data"]["basic_auth.ini"]
    auth_db = re.search(r"database_uri = sqlite:///(/\S+)", ini["data"]["basic_auth.ini"]).group(1)  # type: ignore[union-attr]
    literals = dict(lit.split("=", 1) for g in _kustomization()["configMapGenerator"] for lit in g.get("literals", []))
    artifacts = literals["ARTIFACTS_DESTINATION"]
    assert not auth_db.startswith(artifacts + "/"), "the auth database must not be served as an artifact"
    allowed = env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    ns = _kustomization()["namespace"]
    for host in ("mlflow", f"mlflow.{ns}.svc", f"mlflow.{ns}.svc.cluster.local"):
        assert host in allowed and f"{host}:5000" in allowed
    (pg,) = [s for s in _by_kind("StatefulSet") if s["metadata"]["name"] == "postgres"]
    pg_env = {e["name"]: e for e in pg["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "POSTGRES_PASSWORD" not in pg_env and pg_env["POSTGRES_PASSWORD_FILE"]["value"].startswith("/run/secrets/")
    # the Ray pods log in with the same account
    (job,) = _by_kind("RayJob")
    head_env = {
        e["name"]: e for e in job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    }
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        assert head_env[var]["valueFrom"]["secretKeyRef"] == {"name": "mlflow-auth", "key": var}


def _selected(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    return policy["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()


def test_network_policies_admit_only_each_services_clients() -> None:
    policies = {p["metadata"]["name"]: p for p in _by_kind("NetworkPolicy")}
    deny = policies["default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    (job,) = _by_kind("RayJob")
    ray_labels = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["metadata"]["labels"]
    for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]:
        assert g["template"]["metadata"]["labels"] == ray_labels
    submitter_labels = job["spec"]["submitterPodTemplate"]["metadata"]["labels"]

    def sources(service: str) -> list[tuple[dict[str, Any], set[int]]]:
        (rule,) = policies[service]["spec"]["ingress"]
        return [(src, {p["port"] for p in rule["ports"]}) for src in rule["from"]]

    assert sources("mlflow") == [({"podSelector": {"matchLabels": ray_labels}}, {5000})]
    assert sources("postgres") == [({"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow"}}}, {5432})]
    assert sources("qdrant") == [({"podSelector": {"matchLabels": ray_labels}}, {6333, 6334})]
    ray_rules = policies["ray"]["spec"]["ingress"]
    assert ray_rules[0] == {"from": [{"podSelector": {"matchLabels": ray_labels}}]}
    assert {p["port"] for p in ray_rules[1]["ports"]} == {8265}
    assert {"podSelector": {"matchLabels": submitter_labels}} in ray_rules[1]["from"]
    assert _selected(policies["ray"], ray_labels) and not _selected(policies["ray"], submitter_labels)


def test_rayjob_runs_the_search_scales_and_cleans_up() -> None:
    (job,) = _by_kind("RayJob")
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and 0 < spec["ttlSecondsAfterFinished"] <= 600
    assert spec["entrypoint"] == f"python {IMAGE_ROOT}/search/run.py --config /etc/ragsweep/experiment.yaml"
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__  # the images install the same Ray as the constraints
    assert cluster["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"  # a CPU head
    assert cluster["enableInTreeAutoscaling"] is True  # else min/maxReplicas never scale
    (gpu,) = cluster["workerGroupSpecs"]
    assert 1 <= gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
    head_pod = cluster["headGroupSpec"]["template"]["spec"]
    assert spec["submitterPodTemplate"]["spec"]["securityContext"] == head_pod["securityContext"]
    images = {c["image"] for _, s in _pod_specs() for c in s["containers"]}
    assert {"ragsweep-cpu", "ragsweep-gpu"} <= images
    assert {i["name"] for i in _kustomization()["images"]} == {"ragsweep-cpu", "ragsweep-gpu"}
    mounts = {m["mountPath"]: m["name"] for m in head_pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in head_pod["volumes"]}
    assert volumes[mounts["/models"]]["persistentVolumeClaim"]["claimName"] == "model-cache"
    env = {e["name"]: e.get("value") for e in head_pod["containers"][0]["env"]}
    assert env["HF_HOME"].startswith("/models/")


def _experiment() -> dict[str, Any]:
    return yaml.safe_load((K8S / "experiment.yaml").read_text())


def test_models_are_prefetched_once_into_the_shared_cache() -> None:
    (job,) = [j for j in _by_kind("Job") if j["metadata"]["name"] == "prefetch-models"]
    c = job["spec"]["template"]["spec"]["containers"][0]
    fetched = c["args"][1:]
    llm = _experiment()["llm"]
    wanted = {ep["model"] for ep in (llm["generator"], llm.get("judge")) if ep and ep.get("engine") == "vllm"}
    assert set(fetched) == wanted
    assert {e["name"]: e.get("value") for e in c["env"]}["HF_HOME"].startswith("/models/")
    (pvc,) = [p for p in _by_kind("PersistentVolumeClaim") if p["metadata"]["name"] == "model-cache"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_tune_state_outlives_the_cluster_and_mlflow_is_waited_for() -> None:
    exp = _experiment()
    assert urlsplit(exp["search"]["storage_path"]).scheme in ("s3", "gs", "abfs")
    assert exp["mlflow"]["wait_s"] >= 60


def test_shipped_gpu_configs_fit_the_gpus_they_are_shipped_with(tmp_path: Path) -> None:
    """cluster.yaml's GPU instance type and k8s/gpu-nodes.yaml's node label name the GPU that configs/gpu.yaml and
    k8s/experiment.yaml declare, and every vLLM server fits its share of it."""
    cluster = yaml.safe_load((REPO / "cluster.yaml").read_text())
    instance = cluster["available_node_types"]["gpu_worker"]["node_config"]["InstanceType"]
    gpu_cfg = load_config(REPO / "configs" / "gpu.yaml")
    assert AWS_FAMILY_GPU[instance.split(".")[0]] == gpu_cfg.llm.gpu.type
    ops = yaml.safe_load((K8S / "gpu-nodes.yaml").read_text())
    (selector,) = [op["value"] for op in ops if op["path"].endswith("/nodeSelector")]
    text = (K8S / "experiment.yaml").read_text().replace(IMAGE_ROOT, str(REPO))
    (tmp_path / "experiment.yaml").write_text(text)
    k8s_cfg = load_config(tmp_path / "experiment.yaml")
    assert GFD_PRODUCT_GPU[selector["nvidia.com/gpu.product"]] == k8s_cfg.llm.gpu.type
    for path, cfg in ((REPO / "configs" / "gpu.yaml", gpu_cfg), (K8S / "experiment.yaml", k8s_cfg)):
        lines, problems = gpu_fit(cfg)
        assert problems == [] and len(lines) == 4 and all("fits" in line for line in lines[1:]), lines
        shares = [
            ep.gpus_per_replica
            for ep in (cfg.llm.generator, cfg.llm.judge)
            if ep is not None
            for _ in range(ep.replicas)
        ]
        assert sum(shares) <= 1.0  # one GPU holds every server: one GPU worker runs a search
        # ... together, with their processes' overhead and room to spare (at least 5% of the GPU)
        shared = shared_gpu([(w, ep) for w, ep in cfg.llm.servers() if ep.engine == "vllm"], GPU_MEMORY_GB["L40S"])
        assert len(shared.replicas) == 3 and shared.needed_gb <= 0.95 * shared.gpu_gb, shared.line()
        # every vLLM server waits long enough for a cold node (weights from disk, CUDA graphs), said explicitly
        raw = yaml.safe_load(path.read_text())["llm"]
        for role in ("generator", "judge"):
            assert raw[role]["engine"] == "vllm" and raw[role]["startup_timeout_s"] >= 600, (path.name, role)


def test_every_file_the_manifests_and_docs_link_exists() -> None:
    for f in [*K8S.glob("*.yaml"), REPO / "cluster.yaml", REPO / "Dockerfile"]:
        for ref in re.findall(r"\b(docs/[\w.-]+\.md)", f.read_text()):
            assert (REPO / ref).is_file(), (f.name, ref)


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
    (user,) = re.findall(r"^USER (\d+)$", text, re.M)
    for name, spec in _pod_specs():  # the pods run as the image's user (the upstream images keep their own)
        if any(c["image"].startswith("ragsweep-") for c in spec["containers"]):
            assert spec["securityContext"]["runAsUser"] == int(user), name
    assert "ARG VARIANT=cpu" in text and '"$VARIANT" = "gpu"' in text
    assert "wget" in text  # KubeRay's probes call wget inside the Ray containers
    assert "WORKDIR /opt/ragsweep" in text and "COPY search ./search" in text
    assert re.search(r"^HEALTHCHECK ", text, re.M)
    assert "COPY pyproject.toml README.md constraints.txt" in text and "-c constraints.txt" in text
    extras = metadata("ragsweep").get_all("Provides-Extra")
    for variant in ("cpu,cluster,tracking-server", "gpu,cluster,tracking-server"):
        assert variant in text
        assert set(variant.split(",")) <= set(extras)


def test_images_are_versioned_and_every_node_installs_from_the_one_lock() -> None:
    project_version = version("ragsweep")
    assert "VERSION := $(shell sed -n" in (REPO / "Makefile").read_text()
    for image in _kustomization()["images"]:
        assert image["newTag"] == f"{project_version}-{image['name'].removeprefix('ragsweep-')}"
    cluster = yaml.safe_load((REPO / "cluster.yaml").read_text())
    node_types = cluster["available_node_types"].values()
    commands = [*cluster["head_setup_commands"], *(c for n in node_types for c in n.get("worker_setup_commands", []))]
    installs = [c for c in commands if "pip install" in c]
    assert len(installs) == len(node_types) and all('-c "$HOME/ragsweep/constraints.txt"' in c for c in installs)
    lock = dict(
        line.split("==")
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert lock["ray"] == ray.__version__ == _by_kind("RayJob")[0]["spec"]["rayClusterSpec"]["rayVersion"]
    assert lock["vllm"] and lock["torch"] == version("torch").split("+")[0]
    # this environment is the lock: CI tests what the nodes and images run
    drift = {
        name: (version(name), pinned)
        for name, pinned in lock.items()
        if _installed(name) and version(name).split("+")[0] != pinned
    }
    assert drift == {}, drift


def _installed(name: str) -> bool:
    try:
        version(name)
    except PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``kubectl kustomize k8s/`` (kustomize v5 inside kubectl), with stand-in secret files, written to a file."""
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is needed to render k8s/ (Debian/Ubuntu: apt-get install kubectl)")
    root = tmp_path_factory.mktemp("kustomize")
    shutil.copytree(K8S, root / "k8s")
    shutil.copytree(REPO / "k8s-resume", root / "k8s-resume")
    (root / "k8s" / "postgres.env").write_text("POSTGRES_PASSWORD=0123456789abcdef\n")
    (root / "k8s" / "mlflow-auth.env").write_text(
        "MLFLOW_TRACKING_USERNAME=admin\nMLFLOW_TRACKING_PASSWORD=fedcba9876543210\nMLFLOW_FLASK_SERVER_SECRET_KEY=k\n"
    )
    for overlay, name in (("k8s", "rendered.yaml"), ("k8s-resume", "resume.yaml")):
        out = subprocess.run(["kubectl", "kustomize", str(root / overlay)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        (root / name).write_text(out.stdout)
    return root / "rendered.yaml"


def _settings() -> dict[str, str]:
    (gen,) = [g for g in _kustomization()["configMapGenerator"] if g["name"] == "ragsweep-platform"]
    return dict(lit.split("=", 1) for lit in gen["literals"])


def _models_volumes(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The /models volume of every pod template that mounts it (the RayJob's groups and the prefetch Job)."""
    out = []
    for d in docs:
        templates = []
        if d["kind"] == "Job":
            templates = [d["spec"]["template"]]
        elif d["kind"] == "RayJob":
            c = d["spec"]["rayClusterSpec"]
            templates = [c["headGroupSpec"]["template"]] + [g["template"] for g in c["workerGroupSpecs"]]
        for t in templates:
            for ctr in t["spec"]["containers"]:
                for m in ctr.get("volumeMounts", []):
                    if m["mountPath"] == "/models":
                        out.append({v["name"]: v for v in t["spec"]["volumes"]}[m["name"]])
    return out


def test_model_cache_storage_class_is_a_setting_that_binds(rendered: Path) -> None:
    """The shared cache asks for the ReadWriteMany class named in kustomization.yaml (no class would mean the
    cluster's default, ReadWriteOnce on EKS, GKE and AKS: a PVC that stays Pending)."""
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    (pvc,) = [d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "model-cache"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["storageClassName"] == _settings()["MODEL_CACHE_STORAGE_CLASS"] != "set-by-kustomize"
    volumes = _models_volumes(docs)
    assert len(volumes) == 3 and all(v["persistentVolumeClaim"]["claimName"] == "model-cache" for v in volumes)


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
def test_without_read_write_many_each_pod_caches_its_own_models(rendered: Path, k8s_version: str) -> None:
    """The per-pod component, turned on as the comment in kustomization.yaml says: no shared PVC and no prefetch
    Job; each Ray pod's /models is its own ReadWriteOnce volume of the default class; everything still valid."""
    root = rendered.parent / "per-pod"
    if not root.exists():
        shutil.copytree(rendered.parent / "k8s", root)
        text = (root / "kustomization.yaml").read_text()
        on = text.replace(
            "# components:\n#   - components/per-pod-model-cache", "components:\n  - components/per-pod-model-cache"
        )
        assert on != text
        (root / "kustomization.yaml").write_text(on)
    out = subprocess.run(["kubectl", "kustomize", str(root)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert not [d for d in docs if d["kind"] in ("PersistentVolumeClaim", "Job") and "model" in d["metadata"]["name"]]
    volumes = _models_volumes(docs)
    assert len(volumes) == 2  # head and GPU workers
    for v in volumes:
        claim = v["ephemeral"]["volumeClaimTemplate"]["spec"]
        assert claim["accessModes"] == ["ReadWriteOnce"] and "storageClassName" not in claim
    for d in docs:
        _validate(d, k8s_version)


def test_resume_overlay_is_the_same_search_with_resume(rendered: Path) -> None:
    """k8s-resume/ (applied after deleting the finished RayJob, which KubeRay never re-runs) renders exactly k8s/
    but for --resume with the experiment's name on the entrypoint."""
    base = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    resume = [d for d in yaml.safe_load_all((rendered.parent / "resume.yaml").read_text()) if d]
    (job,) = [d for d in resume if d["kind"] == "RayJob"]
    (base_job,) = [d for d in base if d["kind"] == "RayJob"]
    experiment = _experiment()["mlflow"]["experiment"]
    assert job["spec"]["entrypoint"] == f"{base_job['spec']['entrypoint']} --resume {experiment}"
    job["spec"]["entrypoint"] = base_job["spec"]["entrypoint"]
    assert resume == base
    docs = (REPO / "docs" / "kubernetes.md").read_text()
    delete, apply = docs.index("kubectl -n ragsweep delete rayjob ragsweep-search\n  kubectl apply -k k8s-resume/"), 0
    assert delete > apply


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
def test_kustomize_build_is_valid_and_wired(rendered: Path, k8s_version: str) -> None:
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    assert all(d["metadata"].get("namespace") == "ragsweep" for d in docs if d["kind"] != "Namespace")
    secrets = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
    assert "mlflow-auth" in secrets  # exact: the RayJob refers to it by name
    (pg_secret,) = [n for n in secrets if n.startswith("postgres-")]  # kustomize's hashed name...
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    vols = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
    assert vols["postgres-password"]["secret"]["secretName"] == pg_secret  # ...rewritten where it is used
    (job,) = [d for d in docs if d["kind"] == "RayJob"]
    (group,) = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert group["template"]["spec"]["containers"][0]["image"] == "ghcr.io/your-org/ragsweep:0.1.0-gpu"
    assert "nvidia.com/gpu.product" in group["template"]["spec"]["nodeSelector"]  # gpu-nodes.yaml applied
    assert group["template"]["spec"]["tolerations"]
    for d in docs:  # what kustomize emits is still valid, anchors expanded and names rewritten
        _validate(d, k8s_version)


def _pod_templates_as_deployments(rendered: Path) -> Path:
    """The RayJob's head, worker and submitter pod templates as Deployments (annotations and all), written beside
    ``rendered``: checkov does not look inside a custom resource, but KubeRay makes exactly these pods."""
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    (job,) = [d for d in docs if d["kind"] == "RayJob"]
    cluster = job["spec"]["rayClusterSpec"]
    templates = [("ray-head", cluster["headGroupSpec"]["template"])]
    templates += [(f"ray-{g['groupName']}", g["template"]) for g in cluster["workerGroupSpecs"]]
    templates.append(("ray-submitter", job["spec"]["submitterPodTemplate"]))
    deployments = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": job["metadata"]["namespace"],
                "labels": t["metadata"]["labels"],
                "annotations": t["metadata"].get("annotations", {}),
            },
            "spec": {"replicas": 1, "selector": {"matchLabels": t["metadata"]["labels"]}, "template": t},
        }
        for name, t in templates
    ]
    out = rendered.parent / "rayjob-pods.yaml"
    out.write_text(yaml.safe_dump_all(deployments))
    return out


def test_checkov_passes_with_every_skip_explained(rendered: Path) -> None:
    """checkov (its own venv: scripts/install.sh dev) on the rendered manifests and on the RayJob's pod templates:
    0 failed checks; a skip only through a ``checkov.io/skipN`` annotation that says why."""
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: run scripts/install.sh dev")
    pods = _pod_templates_as_deployments(rendered)
    out = subprocess.run(
        [
            str(CHECKOV),
            "-f",
            str(rendered),
            "-f",
            str(pods),
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--compact",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(out.stdout)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    assert summary["passed"] > 300
    checked = {c["resource"] for c in report["results"]["passed_checks"]}
    assert {f"Deployment.ragsweep.ray-{n}" for n in ("head", "gpu", "submitter")} <= checked
    for c in report["results"]["skipped_checks"]:
        assert len(c["check_result"].get("suppress_comment", "")) > 20, c["check_id"]  # a reason, not a bare id


def _bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (Gi, Mi, G, M or plain bytes) in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for unit, factor in units.items():
        if quantity.endswith(unit):
            return int(float(quantity[: -len(unit)]) * factor)
    return int(quantity)


def test_rays_object_store_fits_in_shared_memory_in_every_group() -> None:
    """Ray puts its object store in /dev/shm only when /dev/shm holds it (else slow files in /tmp): every group
    sets object-store-memory below its shm volume, and the shm volume (RAM) below the container's memory."""
    (job,) = _by_kind("RayJob")
    cluster = job["spec"]["rayClusterSpec"]
    groups = [("head", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in cluster["workerGroupSpecs"]]
    for name, group in groups:
        spec = group["template"]["spec"]
        container = spec["containers"][0]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        shm = {v["name"]: v for v in spec["volumes"]}[mounts["/dev/shm"]]["emptyDir"]
        assert shm["medium"] == "Memory", name
        store = int(group["rayStartParams"]["object-store-memory"])
        assert store <= 0.9 * _bytes(shm["sizeLimit"]), name  # Ray wants a little room beside the store
        assert _bytes(shm["sizeLimit"]) <= 0.5 * _bytes(container["resources"]["limits"]["memory"]), name


def test_namespace_enforces_the_restricted_pod_security_standard() -> None:
    """Pod Security Admission refuses any pod below `restricted`, KubeRay's injected containers included: so the
    autoscaler sidecar gets the same container security context as the Ray containers."""
    (ns,) = _by_kind("Namespace")
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/enforce-version"] == f"v{K8S_VERSION}"
    (job,) = _by_kind("RayJob")
    autoscaler = job["spec"]["rayClusterSpec"]["autoscalerOptions"]["securityContext"]
    assert autoscaler["allowPrivilegeEscalation"] is False and autoscaler["capabilities"]["drop"] == ["ALL"]
    for name, spec in _pod_specs():  # restricted volume types: no hostPath
        assert not [v for v in spec.get("volumes", []) if "hostPath" in v], name
