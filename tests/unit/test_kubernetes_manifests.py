"""deploy/kubernetes/ must be well-formed and agree with the code: the CLI's flags, the app's probe
routes, the configuration loader, and the shutdown timings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from api.app import create_app
from shared.cli import _parser
from shared.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "deploy" / "kubernetes"
KINDS = {"ConfigMap", "Secret", "Deployment", "PodDisruptionBudget", "Service"}


def _objects() -> dict[tuple[str, str], dict[str, Any]]:
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert {"apiVersion", "kind", "metadata"} <= document.keys(), path
            assert document["kind"] in KINDS, path
            key = (document["kind"], document["metadata"]["name"])
            assert key not in objects, f"{key} defined twice"
            objects[key] = document
    return objects


OBJECTS = _objects()
API = OBJECTS["Deployment", "aiapi-api"]
WORKER = OBJECTS["Deployment", "aiapi-worker"]
SECRET = OBJECTS["Secret", "aiapi-keys"]


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = _pod(deployment)["containers"]
    return dict(container)


def _settings(tmp_path: Path, deployment: dict[str, Any]) -> Settings:
    """The configuration the deployment's container reads: the ConfigMap's file at $AIAPI_CONFIG."""
    container = _container(deployment)
    env = {item["name"]: item["value"] for item in container["env"]}
    (volume,) = _pod(deployment)["volumes"]
    (mount,) = container["volumeMounts"]
    assert mount["name"] == volume["name"]
    config_map = OBJECTS["ConfigMap", volume["configMap"]["name"]]
    config_path = Path(env["AIAPI_CONFIG"])
    assert config_path.parent == Path(mount["mountPath"])
    written = tmp_path / config_path.name
    written.write_text(config_map["data"][config_path.name], encoding="utf-8")
    (source,) = container["envFrom"]
    secret = OBJECTS["Secret", source["secretRef"]["name"]]
    return load_settings(written, {**secret["stringData"], **env})


@pytest.mark.parametrize("deployment", [API, WORKER], ids=["api", "worker"])
def test_deployments_select_their_pods_and_run_a_cli_command(deployment: dict[str, Any]) -> None:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    command = _container(deployment)["command"]
    assert command[0] == "aiapi"
    args = _parser().parse_args(command[1:])  # exits (fails the test) on an unknown flag
    assert args.command == deployment["metadata"]["name"].removeprefix("aiapi-")


def test_api_probes_and_ports_match_the_app(tmp_path: Path) -> None:
    container = _container(API)
    args = _parser().parse_args(container["command"][1:])
    settings = _settings(tmp_path, API)
    port = args.port or settings.server.port
    (http,) = container["ports"]
    assert http["containerPort"] == port
    routes = create_app(Settings(redis=settings.redis)).route_handler_method_map
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        check = container[probe]["httpGet"]
        assert check["path"] == path and path in routes
        assert check["port"] in (http["name"], port)
    service = OBJECTS["Service", "aiapi"]
    assert service["spec"]["selector"].items() <= API["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] in (http["name"], port)
    budget = OBJECTS["PodDisruptionBudget", "aiapi-api"]
    assert budget["spec"]["selector"]["matchLabels"] == API["spec"]["selector"]["matchLabels"]


def test_grace_periods_outlast_the_drains(tmp_path: Path) -> None:
    api = _settings(tmp_path, API)
    pause = _container(API)["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    assert _pod(API)["terminationGracePeriodSeconds"] > float(pause[1]) + api.server.drain_s + api.relay.idle_check_s
    worker = _settings(tmp_path, WORKER)
    assert _pod(WORKER)["terminationGracePeriodSeconds"] > worker.worker.drain_s


def test_the_config_is_valid_and_every_key_it_names_is_a_secret(tmp_path: Path) -> None:
    settings = _settings(tmp_path, API)
    assert settings.server.host == "0.0.0.0"
    assert settings.redis.url == SECRET["stringData"]["REDIS_URL"]
    named = {channel.api_key_env for channel in settings.channels if getattr(channel, "api_key_env", None)}
    assert named and named <= SECRET["stringData"].keys()
