"""docker-compose.yml, the Dockerfile and deploy/ held in step with the code and scripts/.

No Docker engine runs here, so these tests read the files: compose must set what
:meth:`Settings.from_env` reads, with the ports and Kafka version of Settings and scripts/, and
Prometheus and Grafana must point at services that exist."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from remitflow.cli import build_parser
from remitflow.config import load_config
from remitflow.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

# Subcommands compose already runs that the command line does not have yet (DESIGN.md §5):
# `serve` comes with the case status API (issue #6). A test fails once it exists, to drop it.


def _load(relative: str) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / relative).read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{relative}: expected a mapping"
    return data


COMPOSE = _load("docker-compose.yml")
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
BUILT = [name for name, service in SERVICES.items() if "build" in service]
DEFAULTS = Settings()

_INTERPOLATION = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?:(:?[-?])([^}]*))?\}")


def _interpolated(value: str) -> str:
    """``value`` as compose sees it with none of its variables set in the host environment."""
    resolved = _INTERPOLATION.sub(lambda m: m.group(2) if m.group(1) in (":-", "-") else "", value)
    assert "$" not in resolved, f"unsupported interpolation in {value!r}"
    return resolved


def _environment(name: str) -> dict[str, str]:
    env = SERVICES[name].get("environment", {})
    # Quoted, except integers: YAML 1.1 (PyYAML) and 1.2 (compose) disagree on `yes`, `on`, 1:2.
    assert all(type(value) in (str, int) for value in env.values()), f"{name}: quote {env}"
    return {variable: _interpolated(str(value)) for variable, value in env.items()}


def _published(name: str) -> tuple[str, int, int]:
    """(host address, published port, container port) of the service's one published port."""
    (spec,) = SERVICES[name]["ports"]
    assert isinstance(spec, str), f"{name}: quote {spec!r} (YAML 1.1 reads a:b as base 60)"
    host, published, target = spec.split(":")
    return host, int(published), int(target)


def _mounts(name: str) -> dict[str, str]:
    """Container path -> source (a named volume, or a path relative to the project)."""
    specs = (_interpolated(spec).split(":") for spec in SERVICES[name].get("volumes", []))
    return {target: source for source, target, *_mode in specs}


def _script_default(script: str, variable: str) -> str:
    """The default of ``${VARIABLE:-default}`` in scripts/<script>."""
    text = (ROOT / "scripts" / script).read_text(encoding="utf-8")
    match = re.search(r"\$\{" + variable + r":-([^}]+)\}", text)
    assert match, f"scripts/{script} has no default for {variable}"
    return match.group(1)


def test_images_are_built_once_from_the_dockerfile_or_pinned_to_versions() -> None:
    assert set(BUILT) == {"refdata", "remitflow", "api"}
    assert {SERVICES[name]["build"] for name in BUILT} == {"."}
    assert len({SERVICES[name]["image"] for name in BUILT}) == 1
    for name in set(SERVICES) - set(BUILT):
        image = SERVICES[name]["image"]
        assert re.fullmatch(r"[a-z0-9./-]+:v?\d+\.\d+\.\d+", image), f"{name}: pin {image!r}"


def test_compose_sets_only_variables_settings_from_env_reads() -> None:
    read = set(re.findall(r'"(REMITFLOW_[A-Z_]+)"', inspect.getsource(Settings.from_env)))
    assert {"REMITFLOW_KAFKA_BOOTSTRAP", "REMITFLOW_METRICS_PORT"} <= read
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    host_variables = set(re.findall(r"\$\{(REMITFLOW_[A-Z_]+)", text))
    assert host_variables <= read, f"compose interpolates unknown {host_variables - read}"
    for name in SERVICES:
        given = set(_environment(name))
        ours = given if name in BUILT else {v for v in given if v.startswith("REMITFLOW_")}
        assert ours <= read, f"{name}: Settings.from_env does not read {ours - read}"


def test_compose_environment_gives_remitflow_its_intended_settings() -> None:
    run = Settings.from_env(_environment("remitflow"))
    redis = urlsplit(run.redis_url)
    assert (redis.hostname, redis.port) == ("redis", _published("redis")[2])
    assert run.metrics_port == DEFAULTS.metrics_port == _published("remitflow")[2]
    # Recovery survives restarts: on a declared named volume.
    assert _mounts("remitflow")[str(run.recovery_dir)] in COMPOSE["volumes"]
    shared: dict[str, str] = {}
    for name in BUILT:  # one deployment: a variable has one value everywhere, and it parses
        for variable, value in _environment(name).items():
            assert shared.setdefault(variable, value) == value, f"{name}: {variable}={value}"
        settings = Settings.from_env(_environment(name))
        assert (settings.redis_url, settings.topic_prefix) == (run.redis_url, DEFAULTS.topic_prefix)
    api = Settings.from_env(_environment("api"))
    assert api.api_port == DEFAULTS.api_port == _published("api")[2]
    # Bearer tokens come from the host environment; the file holds none.
    tokens = SERVICES["api"]["environment"]["REMITFLOW_API_TOKENS"]
    assert tokens.startswith("${REMITFLOW_API_TOKENS")
    assert api.api_tokens == ()


def test_kafka_runs_the_scripts_version_and_advertises_both_bootstraps() -> None:
    version = _script_default("kafka.sh", "REMITFLOW_KAFKA_VERSION")
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{version}"
    env = _environment("kafka")
    bound, advertised = (
        {name: address for name, _, address in (e.partition("://") for e in env[v].split(","))}
        for v in ("KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS")
    )
    protocol_map = env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    protocols = {entry.partition(":")[0] for entry in protocol_map}
    assert set(advertised) <= set(bound) == protocols
    # Host clients use the scripts' address; containers the one compose gives remitflow. Each
    # is advertised by a listener bound on the same port.
    host = _script_default("kafka.sh", "REMITFLOW_KAFKA_BOOTSTRAP")
    container = Settings.from_env(_environment("remitflow")).kafka_bootstrap
    assert host == DEFAULTS.kafka_bootstrap != container
    for bootstrap in (host, container):
        (listener,) = [name for name, address in advertised.items() if address == bootstrap]
        assert bound[listener].rpartition(":")[2] == bootstrap.rpartition(":")[2], listener
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # remitflow creates its topics


def test_published_ports_are_loopback_and_the_defaults_of_settings_and_scripts() -> None:
    assert _script_default("redis.sh", "REMITFLOW_REDIS_URL") == DEFAULTS.redis_url
    expected = {
        "kafka": int(DEFAULTS.kafka_bootstrap.rpartition(":")[2]),
        "redis": urlsplit(DEFAULTS.redis_url).port,
        "remitflow": DEFAULTS.metrics_port,
        "api": DEFAULTS.api_port,
        "prometheus": 9090,
        "grafana": 3000,
    }
    # Loopback only, like scripts/, and the same port inside and out.
    assert {name: _published(name) for name in expected} == {
        name: ("127.0.0.1", port, port) for name, port in expected.items()
    }


def test_depends_on_conditions_can_be_met() -> None:
    for name, service in SERVICES.items():
        for dependency, spec in service.get("depends_on", {}).items():
            needed = SERVICES[dependency]
            if spec["condition"] == "service_healthy":
                assert needed["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), dependency
            elif spec["condition"] == "service_completed_successfully":  # a one-shot: no restart
                assert needed.get("restart", "no") == "no", dependency
            else:
                assert spec["condition"] == "service_started", f"{name}: {spec}"
    waits = SERVICES["remitflow"]["depends_on"]
    assert {dependency: spec["condition"] for dependency, spec in waits.items()} == {
        "kafka": "service_healthy",
        "redis": "service_healthy",
        "refdata": "service_completed_successfully",
    }


def test_mounted_files_exist_and_named_volumes_are_declared_and_used() -> None:
    declared = set(COMPOSE["volumes"])
    used = set()
    for name in SERVICES:
        for target, source in _mounts(name).items():
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} (for {target}) missing"
            else:
                assert source in declared, f"{name}: volume {source} undeclared"
                used.add(source)
    assert used == declared


def test_refdata_loads_the_example_configuration_it_mounts() -> None:
    command = SERVICES["refdata"]["command"]
    assert command[:2] == ["refdata", "load"]
    refdata, _ = load_config(ROOT / _mounts("refdata")[command[2]])
    assert refdata.entities


@pytest.mark.parametrize("name", BUILT)
def test_compose_commands_are_ones_the_cli_accepts(name: str) -> None:
    command = SERVICES[name]["command"]
    build_parser().parse_args(command)  # argparse exits (a test error) on a refused command


def test_prometheus_scrapes_remitflow_metrics_port() -> None:
    config = _mounts("prometheus")["/etc/prometheus/prometheus.yml"]
    assert config == "./deploy/prometheus/prometheus.yml"
    jobs = {job["job_name"]: job for job in _load(config)["scrape_configs"]}
    assert jobs["remitflow"]["metrics_path"] == "/metrics"
    (static,) = jobs["remitflow"]["static_configs"]
    assert static["targets"] == [f"remitflow:{DEFAULTS.metrics_port}"]


def test_grafana_provisions_the_prometheus_service_and_the_dashboards_folder() -> None:
    mounts = _mounts("grafana")
    provisioning = mounts["/etc/grafana/provisioning"]
    assert provisioning == "./deploy/grafana/provisioning"
    (datasource,) = _load(f"{provisioning}/datasources/prometheus.yml")["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["uid"] == "prometheus"  # dashboards refer to it by this uid
    url = urlsplit(datasource["url"])
    assert (url.hostname, url.port) == ("prometheus", _published("prometheus")[2])
    (provider,) = _load(f"{provisioning}/dashboards/dashboards.yml")["providers"]
    assert provider["options"]["path"] in mounts


def test_dockerfile_installs_the_project_on_a_supported_python_as_non_root() -> None:
    text = re.sub(r"(?m)^\s*#.*$", "", (ROOT / "Dockerfile").read_text(encoding="utf-8"))

    def arguments(instruction: str) -> list[str]:
        return re.findall(rf"(?m)^{instruction}\s+(.+?)\s*$", text)

    (image,) = arguments("FROM")
    match = re.fullmatch(r"python:3\.(\d+)(?:\.\d+)?-slim(?:-\w+)?", image)
    assert match, image
    assert 11 <= int(match.group(1)) <= 12  # bytewax 0.21.1 wheels (pyproject requires-python)
    assert ". ." in arguments("COPY")
    assert re.findall(r"pip install[^\n&;]*", text) == ["pip install ."]  # no extras
    assert arguments("USER")[-1].split(":")[0] not in ("root", "0")
    assert (arguments("ENTRYPOINT"), arguments("CMD")) == (['["remitflow"]'], ['["run"]'])


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".run", "**/.hypothesis", "**/__pycache__"} <= ignored
    assert not {"pyproject.toml", "README.md", "remitflow", "sources"} & ignored
