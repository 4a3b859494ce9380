"""deploy/kubernetes: every overlay renders with kustomize, validates against Kubernetes' schemas, and
deploys what ovserve itself would load (its config.json, graph and flags)."""

import json
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from ovserve.cli import build_parser
from ovserve.framework import build_registry, load_graph
from ovserve.server.ovms_config import load_ovms_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
KUBECTL = shutil.which("kubectl")
KUBERNETES_VERSION = "1.31"

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl (with its kustomize) is not installed on this machine")


def render(overlay: str) -> dict[str, dict]:
    result = subprocess.run([KUBECTL, "kustomize", str(DEPLOY / "overlays" / overlay)], capture_output=True,
                            text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    return {doc["kind"]: doc for doc in yaml.safe_load_all(result.stdout)}


@pytest.mark.parametrize("overlay", ["single", "replicated"])
def test_every_overlay_renders_and_passes_the_kubernetes_schemas(overlay):
    objects = render(overlay)
    for manifest in objects.values():
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)  # raises, naming the field
    expected = {"ConfigMap", "Deployment", "Service", "PersistentVolumeClaim"}
    scaled = {"PodDisruptionBudget", "HorizontalPodAutoscaler"}  # with one replica, a PDB blocks drains and an HPA
    assert set(objects) == expected | (scaled if overlay == "replicated" else set())  # would hold one at one


def test_the_pod_runs_as_non_root_on_a_read_only_root_with_probes_on_health():
    pod = render("single")["Deployment"]["spec"]["template"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["spec"]["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    probes = {name: container[name]["httpGet"]["path"] for name in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes == {"startupProbe": "/v2/health/ready", "readinessProbe": "/v2/health/ready",
                      "livenessProbe": "/v2/health/live"}
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert pod["spec"]["terminationGracePeriodSeconds"] > float(_flag(container["args"], "--shutdown-timeout"))


def test_several_replicas_share_a_read_only_model_volume_and_keep_one_through_drains():
    objects = render("replicated")
    assert objects["Deployment"]["spec"]["replicas"] == 2
    assert objects["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert (objects["HorizontalPodAutoscaler"]["spec"]["minReplicas"], objects["HorizontalPodAutoscaler"]["spec"][
        "maxReplicas"]) == (2, 8)
    assert objects["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert objects["Service"]["spec"]["selector"].items() <= pod_labels.items()


def test_the_config_map_holds_a_config_and_graph_ovserve_loads_and_the_args_parse(tmp_path):
    objects = render("single")
    config_map, deployment = objects["ConfigMap"], objects["Deployment"]
    mounted = tmp_path / "config"  # where the pod mounts it, here
    mounted.mkdir()
    for name, text in config_map["data"].items():
        (mounted / name).write_text(text.replace('"base_path": "/config"', f'"base_path": "{mounted}"'))
    (spec,), _ = load_ovms_config(mounted / "config.json")
    assert spec.name == "smollm2"
    graph = load_graph(spec.graph_path, build_registry([]))  # the OVMS node expands; options validate
    engine = next(r for r in graph.resources if r.name.endswith("engine"))
    assert engine.options.models_path.startswith("/models/")  # the model volume's mount
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(["serve", *container["args"]])
    assert args.config == "/config/config.json"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["config"] == "/config" and engine.options.models_path.startswith(mounts["models"])
    assert json.loads(config_map["data"]["config.json"])["mediapipe_config_list"][0]["base_path"] == mounts["config"]


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]
