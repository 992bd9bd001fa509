"""deploy/k8s validated offline: Kubernetes objects with kubernetes-validate (strict:
unknown fields are errors), the KEDA ScaledObject with jsonschema against the
ScaledObject schema of KEDA v2.20.2 kept in deploy/k8s/keda/, and the promises the
manifests make to each other and to the studio (one studio on the SQLite store,
workers and studio on one ReadWriteMany volume, KEDA scaling the worker Deployment
on metrics the studio exports)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from studio.metrics import StudioMetrics

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
KEDA_SCHEMA = K8S / "keda" / "scaledobject-v2.20.2.schema.json"
# The oldest Kubernetes these manifests are meant for, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())


def documents() -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) of every manifest the kustomization lists."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    found = []
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((K8S / name).read_text()):
            if document:
                found.append((name, document))
    return found


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in documents() if doc["kind"] == kind}


def strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused: the API server would silently drop
    them (structural pruning), so a misspelt field would never take effect."""
    schema = copy.deepcopy(schema)
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
        for key, value in list(schema.items()):
            if key != "additionalProperties" or isinstance(value, dict):
                schema[key] = strict(value)
    elif isinstance(schema, list):
        schema = [strict(item) for item in schema]
    return schema


def keda_validator() -> jsonschema.protocols.Validator:
    schema = strict(json.loads(KEDA_SCHEMA.read_text()))
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta: Kubernetes' part
    return jsonschema.Draft7Validator(schema)


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(on_disk)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_objects_are_valid(version: str) -> None:
    checked = 0
    for name, document in documents():
        if document["apiVersion"].startswith("keda.sh/"):
            continue
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{name}: {document['kind']}: {exc.message}") from None
        checked += 1
    assert checked == 7  # namespace, claim, Redis (2), studio (2), workers
    # Strict validation refuses what the API server would drop or reject.
    worker = copy.deepcopy(by_kind("Deployment")["fusion-worker"])
    worker["spec"]["template"]["spec"]["terminationGracePeriod"] = 3600  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, version, strict=True)


def test_the_scaled_object_is_valid_for_keda() -> None:
    validator = keda_validator()
    (scaled,) = by_kind("ScaledObject").values()
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(scaled)]
    assert errors == []
    # The schema catches what KEDA would refuse or silently ignore.
    broken = copy.deepcopy(scaled)
    broken["spec"]["triggers"][0]["metadata"]["threshold"] = 1  # must be a string
    broken["spec"]["cooldownPeriods"] = 300  # misspelt: pruned by the API server
    del broken["spec"]["scaleTargetRef"]
    messages = [e.message for e in validator.iter_errors(broken)]
    assert any("is not of type 'string'" in m for m in messages), messages
    assert any("cooldownPeriods" in m for m in messages), messages
    assert any("'scaleTargetRef' is a required property" in m for m in messages), messages


def test_the_manifests_keep_their_promises() -> None:
    deployments = by_kind("Deployment")
    studio, worker = deployments["fusion-studio"], deployments["fusion-worker"]
    # One studio, never two at once: it alone opens the SQLite store.
    assert studio["spec"]["replicas"] == 1
    assert studio["spec"]["strategy"]["type"] == "Recreate"
    studio_args = studio["spec"]["template"]["spec"]["containers"][0]["args"]
    worker_args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
    assert studio_args[:2] == ["python", "app.py"] and "worker" not in studio_args
    assert worker_args[:3] == ["python", "app.py", "worker"]
    broker = studio_args[studio_args.index("--broker") + 1]
    assert worker_args[worker_args.index("--broker") + 1] == broker  # same broker, same queue
    # Both on the one ReadWriteMany volume, at the same path.
    (claim,) = by_kind("PersistentVolumeClaim").values()
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for deployment in (studio, worker):
        pod = deployment["spec"]["template"]["spec"]
        (volume,) = pod["volumes"]
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        (mount,) = pod["containers"][0]["volumeMounts"]
        assert mount["mountPath"] == "/data"
    assert (
        worker["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
        == 1
    )
    # The Service reaches the studio's pods.
    service = by_kind("Service")["fusion-studio"]
    assert (
        service["spec"]["selector"].items()
        <= studio["spec"]["template"]["metadata"]["labels"].items()
    )
    # KEDA scales the worker Deployment on metrics the studio really exports.
    (scaled,) = by_kind("ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"]["name"] == "fusion-worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    used = set(re.findall(r"\bfusion_\w+", trigger["metadata"]["query"]))
    assert "fusion_queue_depth" in used
    exported = StudioMetrics().render().decode()
    for metric in used:
        assert re.search(rf"^{metric}[{{ ]", exported, re.M), f"{metric} is not exported"
