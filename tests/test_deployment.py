"""Deployment files (Dockerfile, docker-compose.yml, .env.example) agree with the code; no Docker needed."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agent.settings import AgentSettings
from indexer.settings import IndexerSettings
from pathorag.cli import app
from rag.settings import RagSettings
from server.settings import ServerSettings

ROOT = Path(__file__).resolve().parents[1]
SETTING_LINE = re.compile(r"^(#\s*)?PATHORAG_([A-Z0-9_]+)=(.*)$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    # Join continuation lines so each instruction is one line.
    return re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())


def _instructions(dockerfile: str, name: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"^{name}\s+(.*)$", dockerfile, flags=re.MULTILINE)]


def _env(service: dict) -> dict:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return env


# --- docker-compose.yml ---------------------------------------------------------------------------


def test_compose_services_have_healthchecks(compose):
    services = compose["services"]
    assert {"qdrant", "vllm", "encoder", "pathorag", "index"} <= set(services)
    for name in ("qdrant", "vllm", "encoder", "pathorag"):
        test = services[name].get("healthcheck", {}).get("test")
        assert test, f"{name} has no healthcheck"
    assert "/readyz" in " ".join(services["qdrant"]["healthcheck"]["test"])
    assert "/health" in " ".join(services["vllm"]["healthcheck"]["test"])
    assert "/health" in " ".join(services["encoder"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(services["pathorag"]["healthcheck"]["test"])


def test_compose_images_and_gpu(compose):
    services = compose["services"]
    assert services["qdrant"]["image"].startswith("qdrant/qdrant:")
    assert services["vllm"]["image"].startswith("vllm/vllm-openai:")
    for name in ("vllm", "encoder"):  # the GPUs are vLLM's; pathorag's containers need none
        assert services[name]["image"].startswith("vllm/vllm-openai:")
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert any("gpu" in device.get("capabilities", []) for device in devices)
        assert "--model" in services[name]["command"]
    for name in ("pathorag", "index"):
        assert "deploy" not in services[name]
    # The page encoder runs on vLLM's pooling runner, one page image per request.
    command = services["encoder"]["command"]
    assert command[command.index("--runner") + 1] == "pooling"
    assert '"image": 1' in command[command.index("--limit-mm-per-prompt") + 1]


def test_compose_pathorag_points_at_the_other_services(compose):
    services = compose["services"]
    for name in ("pathorag", "index"):
        service = services[name]
        assert service["build"]["context"] == "."
        assert service["env_file"] == ".env"
        env = _env(service)
        assert env["PATHORAG_QDRANT_URL"] == "http://qdrant:6333"
        assert env["PATHORAG_VLM_BASE_URL"] == "http://vllm:8000/v1"
        assert env["PATHORAG_DATA_DIR"] == "/data"
        assert set(env) <= {f"PATHORAG_{f.upper()}" for f in ServerSettings.model_fields}, "unknown setting in compose"
    # The answerer pathorag asks for is the one vLLM serves.
    served = services["vllm"]["command"][services["vllm"]["command"].index("--model") + 1]
    assert _env(services["pathorag"])["PATHORAG_VLM_MODEL"] == served
    # ...and the page encoder is the encoder service's model, for indexing and searching alike.
    encoder = services["encoder"]["command"][services["encoder"]["command"].index("--model") + 1]
    for name in ("pathorag", "index"):
        env = _env(services[name])
        assert (env["PATHORAG_PAGE_ENCODER_URL"], env["PATHORAG_PAGE_ENCODER"]) == ("http://encoder:8000", encoder)

    depends = services["pathorag"]["depends_on"]
    assert depends["qdrant"]["condition"] == "service_healthy"
    assert depends["vllm"]["condition"] == "service_healthy"
    assert depends["encoder"]["condition"] == "service_healthy"
    assert services["index"]["depends_on"]["qdrant"]["condition"] == "service_healthy"
    assert services["index"]["depends_on"]["encoder"]["condition"] == "service_healthy"
    assert any(str(port).endswith(":8000") for port in services["pathorag"]["ports"])


def test_compose_index_service_is_a_profiled_one_shot(compose):
    index = compose["services"]["index"]
    assert index["profiles"] == ["index"]
    assert any(volume.startswith("./books:/books") for volume in index["volumes"])
    assert index["command"] == ["index", "add", "--manifest", "/books/manifest.json"]


def test_compose_named_volumes_are_declared(compose):
    declared = set(compose.get("volumes") or {})
    used = set()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/", "~")):
                used.add(source)
    assert used, "no named volumes"
    assert used <= declared, f"undeclared volumes: {used - declared}"
    assert "pathorag-data:/data" in compose["services"]["pathorag"]["volumes"]


# --- .env.example ---------------------------------------------------------------------------------


def _example_lines() -> list[re.Match]:
    return [m for line in (ROOT / ".env.example").read_text().splitlines() if (m := SETTING_LINE.match(line))]


def test_env_example_names_exactly_the_settings():
    names = [m.group(2).lower() for m in _example_lines()]
    assert len(names) == len(set(names)), "a setting appears twice"
    assert set(names) == set(ServerSettings.model_fields), (
        f"missing: {set(ServerSettings.model_fields) - set(names)}; not settings: {set(names) - set(ServerSettings.model_fields)}"
    )


def test_env_example_is_a_valid_configuration(monkeypatch, tmp_path):
    for name in ServerSettings.model_fields:
        monkeypatch.delenv(f"PATHORAG_{name.upper()}", raising=False)
    settings = ServerSettings(_env_file=ROOT / ".env.example")
    active = {m.group(2).lower(): m.group(3) for m in _example_lines() if not m.group(1)}
    for name in active:  # the active lines are the defaults
        assert getattr(settings, name) == ServerSettings.model_fields[name].get_default(call_default_factory=True), name
    # The commented examples parse too.
    uncommented = tmp_path / ".env"
    uncommented.write_text("\n".join(f"PATHORAG_{m.group(2)}={m.group(3)}" for m in _example_lines()) + "\n")
    full = ServerSettings(_env_file=uncommented)
    assert full.qdrant_url == "http://qdrant:6333"
    assert full.vlm_base_url == "http://vllm:8000/v1"


def test_each_package_reads_its_own_section_of_env_example(monkeypatch):
    """Each section of .env.example names the package whose settings declare its variables, and that
    package's settings read them from the environment (set to the example's values)."""
    parts = {"rag": RagSettings, "indexer": IndexerSettings, "agent": AgentSettings, "server": ServerSettings}
    own = {pkg: set(cls.model_fields) - set().union(*(b.model_fields for b in cls.__bases__ if b in parts.values()))
           for pkg, cls in parts.items()}
    assert sum(len(names) for names in own.values()) == len(ServerSettings.model_fields)  # no field declared twice
    section = None
    seen = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        if heading := re.match(r"# === \w+ \((\w+)\) =", line):
            section = heading.group(1)
        elif (m := SETTING_LINE.match(line)) and section in parts:
            name = m.group(2).lower()
            assert name in own[section], f"PATHORAG_{m.group(2)} is in the {section} section but not declared there"
            monkeypatch.setenv(f"PATHORAG_{m.group(2)}", m.group(3))
            seen.add(name)
    assert seen == set(ServerSettings.model_fields)
    everything = ServerSettings(_env_file=None)
    for pkg, cls in parts.items():
        settings = cls(_env_file=None)
        for name in cls.model_fields:
            assert getattr(settings, name) == getattr(everything, name), (pkg, name)
    assert everything.qdrant_url == "http://qdrant:6333" and everything.vlm_base_url == "http://vllm:8000/v1"


# --- Dockerfile -----------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_non_root_with_healthcheck(dockerfile):
    assert not dockerfile.startswith("# syntax="), "a syntax line makes BuildKit pull a frontend image"
    stages = _instructions(dockerfile, "FROM")
    assert len(stages) >= 2
    assert any("COPY --from=builder /opt/venv" in line for line in dockerfile.splitlines())
    users = _instructions(dockerfile, "USER")
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    healthcheck = " ".join(_instructions(dockerfile, "HEALTHCHECK"))
    assert "/healthz" in healthcheck and "urllib" in healthcheck
    assert "tesseract-ocr" in dockerfile
    assert any("PATHORAG_DATA_DIR=/data" in line for line in _instructions(dockerfile, "ENV"))
    assert _instructions(dockerfile, "VOLUME") == ['["/data"]']
    runtime = dockerfile[dockerfile.rindex("\nFROM "):]
    copies = _instructions(runtime, "COPY")
    assert copies == ["--from=builder /opt/venv /opt/venv"], "the build inputs (CA bundle, wheels) stay in the builder"


def test_dockerfile_variant_chooses_the_torch_build(dockerfile):
    assert any(arg.startswith("VARIANT=cpu") for arg in _instructions(dockerfile, "ARG"))
    args = _instructions(dockerfile, "ARG")
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in args  # the default; empty = no PyTorch index
    run = " ".join(_instructions(dockerfile, "RUN"))
    assert "cpu)" in run and "cuda)" in run and '--index-url "$TORCH_INDEX_URL"' in run
    pinned = re.search(r"ARG TORCH_VERSION=(\S+)", dockerfile).group(1)
    dependency = next(d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
                      if d.startswith("torch"))
    from packaging.specifiers import SpecifierSet

    assert pinned in SpecifierSet(dependency.removeprefix("torch")), f"torch {pinned} outside {dependency}"


def test_dockerfile_copies_every_package(dockerfile):
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    copies = " ".join(_instructions(dockerfile, "COPY"))
    for package in packages:
        assert f"{package}/" in copies, f"the Dockerfile does not copy {package}/"
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert not ignored & (set(packages) | {"pyproject.toml", "README.md"})


def test_dockerfile_entrypoint_and_command_exist():
    dockerfile = (ROOT / "Dockerfile").read_text()
    entrypoint = json.loads(_instructions(dockerfile, "ENTRYPOINT")[-1])
    command = json.loads(_instructions(dockerfile, "CMD")[-1])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["pathorag"] and "pathorag" in scripts
    assert command[:1] == ["serve"] and "--host" in command
    result = CliRunner().invoke(app, [*command[:1], "--help"])
    assert result.exit_code == 0, result.output
    assert "--host" in result.output
    # The compose indexing service runs `pathorag index add`.
    assert CliRunner().invoke(app, ["index", "add", "--help"]).exit_code == 0
