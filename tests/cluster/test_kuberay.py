"""``raycifar k8s``: every manifest it writes, validated offline against KubeRay's CRDs
(../shared/kuberay, KubeRay v1.7.0-rc.0-5) in a strict mode, their CEL rules, and the core
objects against Kubernetes' own schemas (kubernetes-validate)."""

from __future__ import annotations

import copy
import functools
import shlex
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from raycifar.cli import app

CRDS = Path(__file__).resolve().parents[3] / "shared" / "kuberay"
K8S_VERSION = "1.33"  # the Kubernetes API that kubernetes-validate checks PVCs and pod templates against
VARIANTS = {
    "gpu": ["smoke_space", "--name", "smoke-1", "--image", "ghcr.io/org/raycifar:0.1.0", "--", "--num-samples", "4"],
    "cpu-workers": ["smoke_space", "--name", "cpu", "--image", "r:1", "--workers", "3", "--gpus-per-worker", "0",
                    "--storage-class", "nfs", "--namespace", "lab", "--deadline", "90m", "--backoff-limit", "1"],
    "resume-only": ["--resume", "--name", "smoke-1", "--image", "r:1", "--results-dir", "/shared/runs/rc"],
}  # fmt: skip


@functools.cache
def _crd(kind: str) -> dict:
    """A KubeRay CRD file, parsed once per session (libyaml's loader: the files are large)."""
    return yaml.load((CRDS / f"ray.io_{kind}.yaml").read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _crd_schema(kind: str) -> dict:
    """The served ``v1`` openAPIV3Schema of a KubeRay CRD, made strict (see :func:`_strict`)."""
    (version,) = [v for v in _crd(kind)["spec"]["versions"] if v["name"] == "v1"]
    return _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))


def _strict(node: object) -> object:
    """Every object schema that lists its properties refuses others (``additionalProperties:
    false``), unless it says ``x-kubernetes-preserve-unknown-fields``: the API server would
    prune an unknown field silently, which hides a misspelling."""
    if isinstance(node, dict):
        for value in node.values():
            _strict(value)
        if "properties" in node and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


@pytest.fixture(scope="module")
def rayjob_schema() -> dict:
    return _crd_schema("rayjobs")


def _write(tmp_path: Path, args: list[str]) -> list[dict]:
    out = tmp_path / "m.yaml"
    result = CliRunner().invoke(app, ["k8s", "--out", str(out), *args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return list(yaml.safe_load_all(out.read_text()))


def _errors(schema: dict, document: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(document)]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rayjob_validates_against_the_crd_strictly(tmp_path: Path, rayjob_schema: dict, variant: str) -> None:
    claim, job = _write(tmp_path, VARIANTS[variant])
    assert (claim["kind"], job["kind"]) == ("PersistentVolumeClaim", "RayJob")
    assert _errors(rayjob_schema, job) == []
    cluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "c"}, "spec": job["spec"]["rayClusterSpec"]}
    assert _errors(_crd_schema("rayclusters"), cluster) == []
    spec = job["spec"]
    assert spec["backoffLimit"] >= 1 and spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0 and spec["activeDeadlineSeconds"] > 0
    assert spec["rayClusterSpec"]["authOptions"] == {"mode": "token"}
    for pod in _templates(job):  # the claim at /shared in every pod
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v]
        assert claims == [claim["metadata"]["name"]]
        assert {"name": "shared", "mountPath": "/shared"} in pod["spec"]["containers"][0]["volumeMounts"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_the_worker_group_asks_the_gpus_and_the_deadline_is_the_one_given(tmp_path: Path) -> None:
    _, job = _write(tmp_path, VARIANTS["gpu"])
    (group,) = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert (group["groupName"], group["replicas"], limits["nvidia.com/gpu"]) == ("gpu", 1, "1")
    assert job["spec"]["activeDeadlineSeconds"] == 24 * 3600
    _, cpu_job = _write(tmp_path, VARIANTS["cpu-workers"])
    (group,) = cpu_job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert "nvidia.com/gpu" not in group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert (group["replicas"], cpu_job["spec"]["activeDeadlineSeconds"], cpu_job["metadata"]["namespace"]) == (3, 5400, "lab")


@pytest.mark.parametrize(
    ("path", "misspelt"),
    [(("spec",), "shutdownAfterJobFinished"), (("spec", "rayClusterSpec", "headGroupSpec"), "rayStartParam")],
)
def test_a_misspelt_field_is_refused(tmp_path: Path, rayjob_schema: dict, path: tuple[str, ...], misspelt: str) -> None:
    """The CRDs alone accept it (the API server would prune it); the strict schema does not."""
    _, job = _write(tmp_path, VARIANTS["gpu"])
    node = job
    for key in path:
        node = node[key]
    node[misspelt] = node.pop(next(k for k in node if k.lower().startswith(misspelt.lower()[:12])))
    crd = _crd("rayjobs")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _errors(crd, job) == []
    (error,) = _errors(rayjob_schema, job)
    assert misspelt in error and "Additional properties are not allowed" in error


def _rules(schema: dict, value: object, where: str = "") -> Iterator[tuple[str, dict, object]]:
    """Each ``x-kubernetes-validations`` rule of ``schema`` whose field is set in ``value``."""
    if not isinstance(value, (dict, list)) and "x-kubernetes-validations" not in schema:
        return
    for rule in schema.get("x-kubernetes-validations", []):
        yield where, rule, value
    if isinstance(value, dict):
        for key, child in value.items():
            if key in schema.get("properties", {}):
                yield from _rules(schema["properties"][key], child, f"{where}/{key}")
    elif isinstance(value, list) and "items" in schema:
        for index, child in enumerate(value):
            yield from _rules(schema["items"], child, f"{where}[{index}]")


def _cel_failures(schema: dict, document: dict) -> tuple[list[str], list[str]]:
    """(rules evaluated on the fields set, the messages of those that fail), with cel-python.
    Transition rules (``oldSelf``) only apply to updates: on a create they hold."""
    celpy = pytest.importorskip("celpy", reason="pip install cel-python (the test extra)")
    env, checked, failed = celpy.Environment(), [], []
    for where, rule, value in _rules(schema, document):
        if "oldSelf" in rule["rule"]:
            continue
        checked.append(f"{where}: {rule['rule']}")
        if not env.program(env.compile(rule["rule"])).evaluate({"self": celpy.json_to_cel(value)}):
            failed.append(f"{where}: {rule['message']}")
    return checked, failed


def test_the_crds_cel_rules_hold_for_the_fields_set(tmp_path: Path) -> None:
    """The CEL rules of the fields raycifar sets all hold (today none of its fields has a
    create-time rule: the CRDs' rules are on deletionStrategy, managedBy and GCS fault
    tolerance, which raycifar leaves unset); and the check does catch a broken rule."""
    schema = _crd_schema("rayjobs")
    for args in VARIANTS.values():
        _, job = _write(tmp_path, args)
        assert _cel_failures(schema, job)[1] == []
    broken = {"spec": {"deletionStrategy": {"onSuccess": {"policy": "DeleteCluster"}}, "managedBy": "me"}}
    checked, failed = _cel_failures(schema, broken)
    assert len(checked) == 3  # managedBy's other rule compares with oldSelf: updates only
    assert sorted(failed) == [
        "/spec/deletionStrategy: deletionStrategy requires either BOTH onSuccess and onFailure, OR the deletionRules field (cannot be empty)",
        "/spec/managedBy: the managedBy field value must be either 'ray.io/kuberay-operator' or 'kueue.x-k8s.io/multikueue'",
    ]


def _templates(job: dict) -> list[dict]:
    cluster = job["spec"]["rayClusterSpec"]
    return [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_claim_and_the_pod_templates_are_valid_kubernetes_objects(tmp_path: Path, variant: str) -> None:
    validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (the test extra)")
    claim, job = _write(tmp_path, VARIANTS[variant])
    validate.validate(claim, K8S_VERSION, strict=True)
    for index, template in enumerate(_templates(job)):
        pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"t{index}"}, "template": template}
        validate.validate(pod_template, K8S_VERSION, strict=True)
    broken = copy.deepcopy(claim)
    broken["spec"]["accesModes"] = broken["spec"].pop("accessModes")
    with pytest.raises(validate.ValidationError, match="accesModes"):
        validate.validate(broken, K8S_VERSION, strict=True)


def test_the_entrypoint_starts_then_resumes(tmp_path: Path) -> None:
    """First run: ``raycifar sweep SPACE``; a retry (the folder holds resume.json): ``--resume``."""
    _, job = _write(tmp_path, VARIANTS["gpu"])
    words = shlex.split(job["spec"]["entrypoint"])
    assert words[:2] == ["bash", "-c"] and len(words) == 3
    script = words[2]
    assert 'exec raycifar sweep smoke_space --name smoke-1 --address "auto" --results-dir /shared/rc --num-samples 4' in script
    assert 'interrupted) exec raycifar sweep --resume smoke-1 --address "auto" --results-dir /shared/rc ;;' in script


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["smoke_space", "--name", "Big_Name", "--image", "r:1"], "--name 'raycifar-Big_Name': Kubernetes names"),
        (["smoke_space", "--name", "a", "--image", "r:1", "--results-dir", "/data/rc"], "must be under /shared"),
        (["smoke_space", "--name", "a", "--image", "r:1", "--", "--num-samples", "0"], "raycifar sweep --num-samples 0"),
        (["smoke_space", "--name", "a", "--image", "r:1", "--", "--address", "auto"], "--address: set by the written job"),
        (["--name", "a", "--image", "r:1"], "give a SPACE, or --resume"),
        (["smoke_space", "--name", "a", "--image", "r:1", "--deadline", "soon"], "--deadline 'soon'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "m.yaml"
    result = CliRunner().invoke(app, ["k8s", "--out", str(out), *args], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()
