"""docker/: the compose file and the Dockerfile, checked without a Docker engine.

No engine runs here (nor in CI), so the files are parsed and checked against what they
must agree with: the settings model (every ``TRIBRID_*`` variable is a real field and
its value validates), the services and volumes they reference, ``docker/.env.example``,
and the Makefile's install steps.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from tribrid.errors import NO_DEPS_WHEELS
from tribrid.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


def _env_example() -> dict[str, str]:
    values = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``, recursively."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op == ":-":
            return arg
        raise AssertionError(f"${{{name}}} has no default and docker/.env.example does not set it")

    return _VARIABLE.sub(replace, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    raw = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())  # resolves the << merges
    return dict(_interpolate(raw, _env_example()))


TRIBRID_SERVICES = ("worker", "beat", "flower", "watch", "serve", "cli")


def test_services_and_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"qdrant", "redis", "postgres", "prometheus", *TRIBRID_SERVICES}
    assert services["qdrant"]["image"].startswith("qdrant/qdrant:v")
    assert services["redis"]["image"].startswith("redis:")
    assert services["postgres"]["image"].startswith("postgres:")
    for name in TRIBRID_SERVICES:
        service = services[name]
        assert service["image"] == "tribrid:latest"
        build = service["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    assert int(services["worker"]["deploy"]["replicas"]) >= 1  # and `--scale worker=N`
    assert services["beat"]["entrypoint"][:4] == [
        "celery",
        "-A",
        "tribrid.background.worker",
        "beat",
    ]
    assert services["flower"]["entrypoint"][3] == "flower"
    assert services["cli"]["profiles"] == ["cli"]  # `run --rm cli ...`, never started by `up`
    assert services["watch"]["profiles"] == ["watch"]  # opt-in: `--profile watch`
    assert services["watch"]["command"] == ["watch", "/documents", "--background"]
    serve = services["serve"]  # opt-in: `--profile embedded`, the embedded store
    assert serve["profiles"] == ["embedded"] and serve["command"][0] == "serve"
    assert serve["environment"]["TRIBRID_STORE__BACKEND"] == "edge"
    assert serve["environment"]["TRIBRID_SERVE__API_KEY"]  # it binds beyond loopback
    assert serve["ports"] == ["127.0.0.1:8765:8765"]
    assert "healthcheck" in services["postgres"] and "healthcheck" in services["redis"]


def _field(name: str) -> None:
    """Fail unless ``TRIBRID_A__B`` names the field ``a.b`` of the settings model."""
    model: type[BaseModel] = Settings
    parts = name.removeprefix("TRIBRID_").lower().split("__")
    for depth, part in enumerate(parts, 1):
        fields = model.model_fields
        assert part in fields, (
            f"{name}: {'.'.join(parts[:depth])} is not a setting; {model.__name__} has "
            f"{sorted(fields)}"
        )
        annotation = fields[part].annotation
        if depth < len(parts):
            assert isinstance(annotation, type) and issubclass(annotation, BaseModel), (
                f"{name}: {'.'.join(parts[:depth])} has no nested settings"
            )
            model = annotation


def test_every_tribrid_variable_is_a_setting_and_validates(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, service in compose["services"].items():
        env = {k: str(v) for k, v in service.get("environment", {}).items()}
        tribrid = {k: v for k, v in env.items() if k.startswith("TRIBRID_")}
        if name not in TRIBRID_SERVICES:
            assert not tribrid
            continue
        for variable in tribrid:
            _field(variable)
        for variable in [v for v in os.environ if v.startswith("TRIBRID_")]:
            monkeypatch.delenv(variable)
        for variable, value in tribrid.items():
            monkeypatch.setenv(variable, value)
        settings = Settings()  # a value the model refuses raises here, naming the field
        assert settings.data_dir == Path("/data")
        if name == "serve":  # the embedded profile: the server owns the store in /data
            assert settings.store.backend == "edge" and settings.serve.api_key is not None
        else:
            assert settings.store.backend == "qdrant"
            assert settings.store.url == "http://qdrant:6333"
        assert settings.database_url.startswith("postgresql+psycopg://tribrid:")
        assert settings.database_url.endswith("@postgres:5432/tribrid")
        assert settings.broker_url == "redis://redis:6379/0"
        assert settings.celery.resync_sources == ["/documents"]
        assert settings.celery.resync_interval_s is not None


def test_services_reach_each_other_by_name(compose: dict[str, Any]) -> None:
    services = compose["services"]
    environment = services["worker"]["environment"]
    hosts = {
        re.sub(r"^\w[\w+]*://(?:[^@/]*@)?", "", environment[k]).split(":")[0]
        for k in ("TRIBRID_STORE__URL", "TRIBRID_DATABASE__URL", "TRIBRID_CELERY__BROKER_URL")
    }
    assert hosts == {"qdrant", "postgres", "redis"} <= set(services)
    for name, service in services.items():
        for target in service.get("depends_on", {}):
            assert target in services, f"{name} depends on {target}, which is not a service"
    postgres = services["postgres"]["environment"]
    url = environment["TRIBRID_DATABASE__URL"]
    assert f"{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}@" in url
    assert url.endswith("/" + postgres["POSTGRES_DB"])


def test_volumes_are_declared_and_the_documents_are_mounted(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source, target, *mode = volume.split(":")
            if not source.startswith(("/", ".")):
                assert source in declared, f"{name} uses the undeclared volume {source}"
                used.add(source)
            if target == "/documents":
                assert mode == ["ro"] and source == _env_example()["TRIBRID_DOCUMENTS"]
        if name in TRIBRID_SERVICES:
            assert "tribrid-data:/data" in service["volumes"]
    assert used == declared


def test_no_embedded_store_without_its_writer(compose: dict[str, Any]) -> None:
    """Edge allows one process per store: only `tribrid serve`, its owner, opens it."""
    for name, service in compose["services"].items():
        backend = service.get("environment", {}).get("TRIBRID_STORE__BACKEND", "edge")
        if "TRIBRID_DATA_DIR" in service.get("environment", {}):
            owner = name == "serve" and service["command"][0] == "serve"
            assert backend == "qdrant" or owner, name


def test_the_dockerfile_installs_like_the_makefile() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    make_torch = re.search(r"^TORCH_SPEC \?= (\S+)$", makefile, re.M)
    docker_torch = re.search(r"^ARG TORCH_SPEC=(\S+)$", dockerfile, re.M)
    assert make_torch and docker_torch and docker_torch[1] == make_torch[1]

    def steps(text: str) -> tuple[list[int], str, set[str]]:
        """Where torch, tribrid, the no-deps wheel and the check go in, tribrid's extras
        and the wheels installed without their dependencies."""
        lines = [" ".join(line.split()) for line in text.replace("\\\n", " ").splitlines()]
        lines = [
            line
            for line in lines
            if ("pip " in line or "pip-check.sh" in line) and not line.startswith("#")
        ]
        commands = [c.strip() for line in lines for c in line.split("&&")]
        torch = next(i for i, c in enumerate(commands) if "TORCH_SPEC" in c)
        project = next(
            i for i, c in enumerate(commands) if re.search(r"install (-q )?(-e )?\"\.", c)
        )
        extras = re.search(r"\"\.\[([^\]]*)\]\"", commands[project])
        no_deps = [i for i, c in enumerate(commands) if "--no-deps" in c]
        wheels = {w for i in no_deps for w in shlex.split(commands[i].split("--no-deps", 1)[1])}
        check = next(
            i for i, c in enumerate(commands) if re.match(r"(RUN )?sh scripts/pip-check\.sh ", c)
        )
        return [torch, project, *no_deps, check], extras[1] if extras else "", wheels

    docker_order, docker_extras, docker_wheels = steps(dockerfile)
    make_order, make_extras, make_wheels = steps(makefile)
    # torch first, then tribrid, then the one wheel that goes in without its
    # dependencies, then the check that nothing else is missing.
    assert docker_order == sorted(docker_order) and len(docker_order) == 4
    assert make_order == sorted(make_order) and len(make_order) == 4
    assert docker_wheels == make_wheels == set(NO_DEPS_WHEELS.values())
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert "all" in docker_extras.split(",")
    assert make_extras == "dev" and "tribrid[all]" in extras["dev"]
    assert "download.pytorch.org/whl/cpu" in dockerfile  # never a CUDA build
    assert "scripts/system-deps.sh" in dockerfile and "scripts/system-deps.sh" in makefile
    env = dict(re.findall(r"(\w+)=(\S+)", dockerfile.split("ENV", 1)[1].split("\n\n", 1)[0]))
    assert env["DO_NOT_TRACK"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    users = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    for copy in re.findall(r"^COPY (.+)$", dockerfile, re.M):
        for source in copy.split()[:-1]:
            assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is missing"


def test_prometheus_scrapes_the_workers_and_flower(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """docker/prometheus.yml names services and ports the compose file really has."""
    services = compose["services"]
    prometheus = services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:v")
    assert prometheus["profiles"] == ["metrics"] and prometheus["ports"] == ["127.0.0.1:9090:9090"]
    mounted = next(
        v for v in prometheus["volumes"] if v.endswith(":/etc/prometheus/prometheus.yml:ro")
    )
    config = yaml.safe_load((DOCKER / mounted.split(":")[0]).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"tribrid-worker", "flower"}

    worker = services["worker"]
    (discovery,) = jobs["tribrid-worker"]["dns_sd_configs"]
    assert discovery["names"] == ["worker"] and discovery["type"] == "A"
    settings = _settings_of(worker, monkeypatch)
    assert discovery["port"] == settings.celery.metrics_port
    assert settings.celery.metrics_host == "0.0.0.0"  # reachable on the compose network…
    assert "ports" not in worker  # …and not published on the host

    (flower_target,) = jobs["flower"]["static_configs"][0]["targets"]
    host, port = flower_target.split(":")
    assert host == "flower" and f"--port={port}" in services["flower"]["entrypoint"]
    assert set(prometheus["depends_on"]) == {"worker", "flower"}


def test_workers_can_log_json(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    worker = compose["services"]["worker"]
    assert _settings_of(worker, monkeypatch).log_format == "text"  # the example's default
    assert "${TRIBRID_LOG_FORMAT:-text}" in (DOCKER / "docker-compose.yml").read_text()


def _settings_of(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a tribrid service's environment gives."""
    for variable in [v for v in os.environ if v.startswith("TRIBRID_")]:
        monkeypatch.delenv(variable)
    for variable, value in service["environment"].items():
        if variable.startswith("TRIBRID_"):
            monkeypatch.setenv(variable, str(value))
    return Settings()
