"""deploy/kserve: the ServingRuntime and InferenceService render with kustomize, validate against the schemas
of KServe's own CRDs (vendored in kserve_schemas/, see its README), and start ovserve the way KServe does:
with the model at /mnt/models, its name for {{.Name}}, on port 8080."""

import copy
import hashlib
import json
import re
import shutil
import subprocess
import typing
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from jsonschema import Draft4Validator, ValidationError

from ovserve.cli import build_parser
from ovserve.engine.settings import ModelFiles, find_model_files

REPO = Path(__file__).resolve().parents[2]
KSERVE = REPO / "deploy" / "kserve"
SCHEMAS = Path(__file__).resolve().parent / "kserve_schemas"
KUBECTL = shutil.which("kubectl")
KUBERNETES_VERSION = "1.31"
KSERVE_VERSION = "v0.20.0"

#: kind -> (the apiVersion KServe serves it at, its CRD's openAPIV3Schema)
CRDS = {"ServingRuntime": ("serving.kserve.io/v1alpha1", "servingruntime-v1alpha1.json"),
        "InferenceService": ("serving.kserve.io/v1beta1", "inferenceservice-v1beta1.json")}
#: Where KServe puts the model of storageUri, and the port it sends requests to (pkg/constants).
MODEL_MOUNT, KSERVE_PORT = "/mnt/models", 8080
#: Kubernetes' default terminationGracePeriodSeconds, which a ServingRuntime has no field to change.
DEFAULT_GRACE_PERIOD = 30
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # KServe's IsvcNameFmt (its validating webhook)

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl (with its kustomize) is not installed on this machine")


@cache
def _rendered() -> str:
    result = subprocess.run([KUBECTL, "kustomize", str(KSERVE)], capture_output=True, text=True, check=False,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def render() -> dict[str, dict]:
    """The objects of deploy/kserve by kind (a fresh copy each time: tests may break them)."""
    return {doc["kind"]: doc for doc in yaml.safe_load_all(_rendered())}


# --- Validating custom resources as the API server does, against their CRD's structural schema ---------------
#
# A CRD's openAPIV3Schema is OpenAPI 3.0's schema object, JSON Schema draft 4/5 semantics (what Draft4Validator
# implements) plus Kubernetes' x-kubernetes-* extensions, which plain jsonschema ignores. The validator below
# keeps every keyword of the schema and adds what the extensions mean to the API server:
# - fields a structural schema does not declare are pruned, and kubectl's default --validate=strict makes the
#   apply fail on them: an object schema without additionalProperties or x-kubernetes-preserve-unknown-fields
#   accepts only its properties (the root's metadata excepted: the API server validates it as ObjectMeta,
#   done here with kubernetes-validate);
# - x-kubernetes-int-or-string: an integer or a string (KServe's schemas also say so with anyOf);
# - x-kubernetes-list-type set: no duplicate items; map: no two items with the same x-kubernetes-list-map-keys
#   (a key missing from an item takes its schema default, as the API server defaults it first);
# - format int32 / int64: the range of the Go field;
# - x-kubernetes-list-type atomic and x-kubernetes-map-type: how server-side apply merges, nothing to validate.
HANDLED_EXTENSIONS = {"x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string", "x-kubernetes-list-type",
                      "x-kubernetes-list-map-keys", "x-kubernetes-map-type"}
_ROOT_METADATA: set[int] = set()  # id() of each root metadata schema, which is ObjectMeta's to check


def _type_and_pruning(validator, types, instance, schema) -> Iterator[ValidationError]:
    yield from Draft4Validator.VALIDATORS["type"](validator, types, instance, schema)
    if (types != "object" or not isinstance(instance, dict) or "additionalProperties" in schema
            or schema.get("x-kubernetes-preserve-unknown-fields") or id(schema) in _ROOT_METADATA):
        return
    unknown = sorted(set(instance) - set(schema.get("properties", {})))
    if unknown:
        yield ValidationError(f"unknown field(s) {', '.join(map(repr, unknown))}: the schema does not declare "
                              f"them (the API server prunes them, and a strict apply fails)")


def _int_or_string(validator, enabled, instance, schema) -> Iterator[ValidationError]:
    if enabled and not (validator.is_type(instance, "integer") or validator.is_type(instance, "string")):
        yield ValidationError(f"{instance!r} is neither an integer nor a string (x-kubernetes-int-or-string)")


def _list_type(validator, list_type, instance, schema) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "array"):
        return
    if list_type == "set":
        seen = [json.dumps(item, sort_keys=True) for item in instance]
        for item in sorted({s for s in seen if seen.count(s) > 1}):
            yield ValidationError(f"duplicate item {item} in a list of type set")
    elif list_type == "map":
        keys = schema["x-kubernetes-list-map-keys"]
        properties = schema["items"].get("properties", {})
        seen: set[str] = set()
        for item in instance:
            if not isinstance(item, dict):
                continue  # items' own schema reports it
            key = json.dumps({k: item.get(k, properties.get(k, {}).get("default")) for k in keys}, sort_keys=True)
            if key in seen:
                yield ValidationError(f"duplicate entry for {key} in a list of type map (keys: {', '.join(keys)})")
            seen.add(key)


FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("int32")
def _int32(value: Any) -> bool:
    return not isinstance(value, int) or isinstance(value, bool) or -(2**31) <= value < 2**31


@FORMATS.checks("int64")
def _int64(value: Any) -> bool:
    return not isinstance(value, int) or isinstance(value, bool) or -(2**63) <= value < 2**63


StructuralValidator = jsonschema.validators.extend(Draft4Validator, {
    "type": _type_and_pruning,
    "x-kubernetes-int-or-string": _int_or_string,
    "x-kubernetes-list-type": _list_type,
})


@cache
def crd_schema(kind: str) -> dict:
    schema = json.loads((SCHEMAS / CRDS[kind][1]).read_text())
    _ROOT_METADATA.add(id(schema["properties"]["metadata"]))
    return schema


def schema_errors(manifest: dict) -> list[str]:
    """Everything the API server (with KServe's CRDs installed) would reject in ``manifest``."""
    kind = manifest.get("kind")
    if kind not in CRDS:
        return [f"kind {kind!r} is not one of KServe's {', '.join(CRDS)}"]
    api_version, _ = CRDS[kind]
    errors = [] if manifest.get("apiVersion") == api_version else [
        f"apiVersion {manifest.get('apiVersion')!r}: KServe {KSERVE_VERSION} serves {kind} at {api_version}"]
    validator = StructuralValidator(crd_schema(kind), format_checker=FORMATS)
    errors += [f"{error.json_path}: {error.message}" for error in validator.iter_errors(manifest)]
    metadata = manifest.get("metadata")
    if isinstance(metadata, dict):
        try:  # ObjectMeta, as Kubernetes' own schema has it (strict: no unknown fields)
            kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata},
                                         KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"$.{'.'.join(map(str, error.path))}: {error.message}")
        name = metadata.get("name")
        if not (isinstance(name, str) and len(name) <= 253 and DNS1123_SUBDOMAIN.match(name)):
            errors.append(f"$.metadata.name {name!r} is not a DNS-1123 subdomain")
        elif kind == "InferenceService" and not ISVC_NAME.match(name):
            errors.append(f"$.metadata.name {name!r} does not match KServe's {ISVC_NAME.pattern}")
    else:
        errors.append("$.metadata is missing")
    return errors


# --- The manifests --------------------------------------------------------------------------------------------

def test_the_kustomization_renders_one_runtime_and_one_inference_service():
    assert set(render()) == set(CRDS)


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_each_object_passes_the_schema_of_kserves_crd(kind):
    assert schema_errors(render()[kind]) == []


def _set(path: str, value: Any) -> Any:
    def change(manifest: dict) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node = manifest
        for part in parents:
            node = node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return change


_DELETE = object()
BROKEN = {  # what is changed -> words of the error it must cause
    "a string for a boolean": ("ServingRuntime", _set("spec.supportedModelFormats.0.autoSelect", "yes"),
                               "is not of type 'boolean'"),
    "a string for an integer": ("InferenceService", _set("spec.predictor.minReplicas", "1"),
                                "is not of type 'integer'"),
    "a misspelt field": ("ServingRuntime", _set("spec.containers.0.readinesProbe", {"periodSeconds": 5}),
                         "unknown field(s) 'readinesProbe'"),
    "a field of a pruned object": ("InferenceService", _set("spec.predictor.model.modelFormat.flavour", "q4"),
                                   "unknown field(s) 'flavour'"),
    "a required field missing": ("InferenceService", _set("spec.predictor.model.modelFormat.name", _DELETE),
                                 "'name' is a required property"),
    "a port out of int32": ("ServingRuntime", _set("spec.containers.0.ports.0.containerPort", 2**31),
                            "is not a 'int32'"),
    "a quantity that is not one": ("ServingRuntime", _set("spec.containers.0.resources.limits.memory", "4 GB"),
                                   "does not match"),
    "a probe port neither integer nor string": ("ServingRuntime",
                                                _set("spec.containers.0.livenessProbe.httpGet.port", 80.5),
                                                "neither an integer nor a string"),
    "two env entries of one name": ("ServingRuntime", lambda m: m["spec"]["containers"][0]["env"].append(
        {"name": "OVSERVE_CACHE_DIR", "value": "/elsewhere"}), "duplicate entry"),
    "a wrong apiVersion": ("InferenceService", _set("apiVersion", "serving.kserve.io/v1alpha1"),
                           "serves InferenceService at serving.kserve.io/v1beta1"),
    "labels that are not strings": ("ServingRuntime", _set("metadata.labels", {"tier": 1}), "$.metadata.labels"),
    "a name KServe refuses": ("InferenceService", _set("metadata.name", "SmolLM2_135M"), "DNS-1123"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_validation_rejects_a_broken_manifest(case):
    kind, change, words = BROKEN[case]
    manifest = copy.deepcopy(render()[kind])
    change(manifest)
    errors = schema_errors(manifest)
    assert any(words in error for error in errors), errors


def test_the_vendored_schemas_are_kserves_unchanged_and_every_extension_in_them_is_handled():
    readme = (SCHEMAS / "README.md").read_text()
    assert KSERVE_VERSION in readme
    used = set()
    for _, file in CRDS.values():
        text = (SCHEMAS / file).read_bytes()
        assert hashlib.sha256(text).hexdigest() in readme, f"{file} differs from the one the README describes"
        used |= set(re.findall(rb'"(x-kubernetes-[a-z-]+)"', text))
    assert {u.decode() for u in used} <= HANDLED_EXTENSIONS  # e.g. x-kubernetes-validations (CEL) would need code


# --- What they make KServe run --------------------------------------------------------------------------------

def _container(runtime: dict) -> dict:
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container"  # the name KServe merges the predictor's settings into
    return container


def _serve_args(runtime: dict, name: str) -> list[str]:
    container = _container(runtime)
    assert container["command"] == ["ovserve", "serve"]
    assert "--model_name={{.Name}}" in container["args"]
    return [arg.replace("{{.Name}}", name) for arg in container["args"]]


def test_the_runtime_starts_ovserve_on_kserves_port_with_the_model_at_mnt_models():
    objects = render()
    runtime, isvc = objects["ServingRuntime"], objects["InferenceService"]
    args = build_parser().parse_args(["serve", *_serve_args(runtime, isvc["metadata"]["name"])])
    assert (args.model, args.model_name, args.host, args.port) == (MODEL_MOUNT, "smollm2", "0.0.0.0", KSERVE_PORT)
    assert args.config is None and args.model_arg is None  # serves the mounted model, fetches nothing
    container = _container(runtime)
    assert [p["containerPort"] for p in container["ports"]] == [KSERVE_PORT]
    assert args.shutdown_timeout < DEFAULT_GRACE_PERIOD  # requests in flight finish before the kubelet kills it
    assert isvc["spec"]["predictor"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_PERIOD) > args.shutdown_timeout


def test_ovserve_serves_the_folder_kserve_mounts(default_model, tmp_path):
    from ovserve.server.serve_models import servable_specs

    mount = tmp_path / "mnt" / "models"  # the PVC folder of storageUri, as `ovserve pull --models-dir` fills it
    mount.mkdir(parents=True)
    (mount / default_model.name).symlink_to(default_model)
    (mount / "generation_config.json").write_text("{}")
    objects = render()
    args = [a.replace(MODEL_MOUNT, str(mount)) for a in _serve_args(objects["ServingRuntime"], "smollm2")]
    (spec,), _ = servable_specs(build_parser().parse_args(["serve", *args]))
    assert spec.name == objects["InferenceService"]["metadata"]["name"]
    assert [o["models_path"] for o in spec.overrides.values()] == [str(mount.resolve())]
    files = find_model_files(mount)
    assert (files.kind, files.path) == ("gguf", mount / default_model.name)
    assert files.kind == objects["InferenceService"]["spec"]["predictor"]["model"]["modelFormat"]["name"]


def test_the_model_formats_are_the_kinds_of_model_ovserve_recognises():
    formats = render()["ServingRuntime"]["spec"]["supportedModelFormats"]
    kinds = typing.get_args(typing.get_type_hints(ModelFiles)["kind"])
    assert sorted(f["name"] for f in formats) == sorted(kinds)
    assert all(f["autoSelect"] is True for f in formats)
    assert len({f.get("priority") for f in formats}) == 1  # KServe refuses a runtime whose priorities differ


def test_the_probes_point_at_health_and_the_container_is_non_root_and_read_only():
    runtime = render()["ServingRuntime"]
    container = _container(runtime)
    probes = {name: (container[name]["httpGet"]["path"], container[name]["httpGet"]["port"])
              for name in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes == {"startupProbe": ("/v2/health/ready", KSERVE_PORT),
                      "readinessProbe": ("/v2/health/ready", KSERVE_PORT),
                      "livenessProbe": ("/v2/health/live", KSERVE_PORT)}
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] != 0
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"] and security["seccompProfile"]["type"] == "RuntimeDefault"
    volumes = {v["name"]: v for v in runtime["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    cache_dir = {e["name"]: e["value"] for e in container["env"]}["OVSERVE_CACHE_DIR"]
    for writable in (cache_dir, "/tmp"):  # the only places it writes, with the root (and the model) read-only
        assert "emptyDir" in volumes[mounts[writable]]
    assert MODEL_MOUNT not in mounts  # KServe mounts the model there itself
    annotations = runtime["spec"]["annotations"]
    assert (annotations["prometheus.kserve.io/port"], annotations["prometheus.kserve.io/path"]) == (
        str(KSERVE_PORT), "/metrics")


def test_the_inference_service_picks_the_runtime_and_the_model_volume_of_deploy_kubernetes():
    objects = render()
    runtime, isvc = objects["ServingRuntime"], objects["InferenceService"]
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    # KServe's RuntimeSupportsModel: the runtime's labels mt:<name>[:<version>] hold the model's
    supported = {f"mt:{f['name']}" for f in runtime["spec"]["supportedModelFormats"]} | {
        f"mt:{f['name']}:{f['version']}" for f in runtime["spec"]["supportedModelFormats"] if "version" in f}
    wanted = model["modelFormat"]
    assert (f"mt:{wanted['name']}:{wanted['version']}" if "version" in wanted else f"mt:{wanted['name']}") in supported
    assert "protocolVersion" not in model and "protocolVersions" not in runtime["spec"]  # matches any protocol
    claim, folder = re.fullmatch(r"pvc://([^/]+)/(.+)", model["storageUri"]).groups()
    pvc = yaml.safe_load((REPO / "deploy" / "kubernetes" / "base" / "models-pvc.yaml").read_text())
    assert (claim, folder) == (pvc["metadata"]["name"], "smollm2")  # where `ovserve pull --models-dir` puts it
    assert isvc["spec"]["predictor"]["minReplicas"] >= 1
    annotations = isvc["metadata"]["annotations"]
    assert annotations["serving.kserve.io/enable-prometheus-scraping"] == "true"
    assert annotations["serving.kserve.io/enable-metric-aggregation"] == "true"
