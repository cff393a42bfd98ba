"""Who reaches the Ray head, decided as Kubernetes decides it: `kubectl kustomize k8s/` rendered with a chosen
operator namespace, then every NetworkPolicy of the output evaluated for a source pod (namespace, labels) and a
port. Only KubeRay's operator, by the labels its real installs give it (Helm chart and kustomize, v1.3 to v1.7), in
its own namespace, and the job's submitter pod may reach the job server and dashboard (8265); Ray's own pods reach
everything; nothing else reaches anything."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

OPERATOR_NS = "kuberay-system"
# The labels KubeRay's own installs put on the operator pod (ray-operator/config/manager/kustomization.yaml and
# helm-chart/kuberay-operator/templates/deployment.yaml, v1.3.0 and v1.7.0).
KUSTOMIZE_OPERATOR = {"app.kubernetes.io/name": "kuberay", "app.kubernetes.io/component": "kuberay-operator"}
HELM_OPERATOR = {
    "app.kubernetes.io/name": "kuberay-operator",
    "app.kubernetes.io/instance": "kuberay-operator",
    "app.kubernetes.io/component": "kuberay-operator",
}
JOB_PORT, GCS_PORT, CLIENT_PORT = 8265, 6379, 10001


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """The rendered NetworkPolicies and the pod labels of the RayJob's head and submitter, with the operator's
    namespace set as a user sets it: one line of kustomization.yaml."""
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is needed to render k8s/ (Debian/Ubuntu: apt-get install kubectl)")
    root = tmp_path_factory.mktemp("netpol") / "k8s"
    shutil.copytree(REPO / "k8s", root)
    (root / "postgres.env").write_text("POSTGRES_PASSWORD=x\n")
    (root / "mlflow-auth.env").write_text("MLFLOW_TRACKING_USERNAME=admin\nMLFLOW_TRACKING_PASSWORD=x\n")
    kustomization = (root / "kustomization.yaml").read_text()
    assert kustomization.count("KUBERAY_OPERATOR_NAMESPACE=default") == 1
    (root / "kustomization.yaml").write_text(
        kustomization.replace("KUBERAY_OPERATOR_NAMESPACE=default", f"KUBERAY_OPERATOR_NAMESPACE={OPERATOR_NS}")
    )
    out = subprocess.run(["kubectl", "kustomize", str(root)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert not [d for d in docs if d["metadata"]["name"] == "ragsweep-platform"], "a setting, never applied"
    (job,) = [d for d in docs if d["kind"] == "RayJob"]
    pods = {
        "head": job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["metadata"]["labels"],
        "worker": job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["metadata"]["labels"],
        "submitter": job["spec"]["submitterPodTemplate"]["metadata"]["labels"],
    }
    return [d for d in docs if d["kind"] == "NetworkPolicy"], pods


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions; {} selects everything)."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for e in selector.get("matchExpressions", []):
        present, value = e["key"] in labels, labels.get(e["key"])
        ok = {
            "In": present and value in e.get("values", []),
            "NotIn": not present or value not in e.get("values", []),
            "Exists": present,
            "DoesNotExist": not present,
        }[e["operator"]]
        if not ok:
            return False
    return True


def _peer_admits(peer: dict[str, Any], policy_ns: str, ns: str, labels: dict[str, str]) -> bool:
    if "ipBlock" in peer:
        return False  # pod-to-pod traffic here; an ipBlock would need its own review
    ns_ok = (
        _matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": ns})
        if "namespaceSelector" in peer
        else ns == policy_ns  # no namespaceSelector: the policy's own namespace only
    )
    return ns_ok and _matches(peer.get("podSelector", {}), labels)


def admitted(
    policies: list[dict[str, Any]], target: dict[str, str], port: int, ns: str, labels: dict[str, str]
) -> bool:
    """Whether a pod (``ns``, ``labels``) may open ``port`` on a ragsweep pod labelled ``target``."""
    selecting = [p for p in policies if _matches(p["spec"]["podSelector"], target)]
    assert selecting, "every pod is selected (default-deny-ingress)"
    for p in selecting:
        for rule in p["spec"].get("ingress", []):
            ports = {x["port"] for x in rule.get("ports", [])}
            if ports and port not in ports:
                continue
            if "from" not in rule or any(_peer_admits(f, p["metadata"]["namespace"], ns, labels) for f in rule["from"]):
                return True
    return False


@pytest.mark.parametrize(
    ("who", "ns", "labels", "port", "expected"),
    [
        ("operator installed with kustomize", OPERATOR_NS, KUSTOMIZE_OPERATOR, JOB_PORT, True),
        ("operator installed with Helm", OPERATOR_NS, HELM_OPERATOR, JOB_PORT, True),
        ("operator's labels in another namespace", "tenant-a", KUSTOMIZE_OPERATOR, JOB_PORT, False),
        ("operator's labels in ragsweep's namespace", "ragsweep", HELM_OPERATOR, JOB_PORT, False),
        ("the old label anywhere", "tenant-a", {"app.kubernetes.io/name": "kuberay-operator"}, JOB_PORT, False),
        ("another pod of the operator's namespace", OPERATOR_NS, {"app": "metrics"}, JOB_PORT, False),
        ("operator to the GCS port", OPERATOR_NS, KUSTOMIZE_OPERATOR, GCS_PORT, False),
        ("operator to the client port", OPERATOR_NS, KUSTOMIZE_OPERATOR, CLIENT_PORT, False),
        ("MLflow's pod", "ragsweep", {"app.kubernetes.io/name": "mlflow"}, JOB_PORT, False),
        ("an unlabelled pod of the namespace", "ragsweep", {}, JOB_PORT, False),
    ],
)
def test_only_the_operator_in_its_namespace_reaches_the_job_server(
    policies: tuple[list[dict[str, Any]], dict[str, dict[str, str]]],
    who: str,
    ns: str,
    labels: dict[str, str],
    port: int,
    expected: bool,
) -> None:
    rules, pods = policies
    assert admitted(rules, pods["head"], port, ns, labels) is expected, who


def test_the_search_reaches_its_own_head(policies: tuple[list[dict[str, Any]], dict[str, dict[str, str]]]) -> None:
    rules, pods = policies
    assert admitted(rules, pods["head"], JOB_PORT, "ragsweep", pods["submitter"])
    assert not admitted(rules, pods["head"], GCS_PORT, "ragsweep", pods["submitter"])
    for port in (JOB_PORT, GCS_PORT, CLIENT_PORT, 12345):
        assert admitted(rules, pods["head"], port, "ragsweep", pods["worker"])
        assert admitted(rules, pods["worker"], port, "ragsweep", pods["head"])
        assert not admitted(rules, pods["head"], port, "tenant-a", pods["worker"])  # same labels, other namespace
