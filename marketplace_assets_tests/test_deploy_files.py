"""The deployment files say what the deployment needs: fast checks, no image built, no process started.

Dockerfile and .dockerignore, deploy/docker-compose.yaml, deploy/.env.example and deploy/helm/values.yaml
are read as text or YAML and checked against each other, against deploy/dagster.yaml and
deploy/workspace.yaml, against the command lines in deploy_processes.py and against the README.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from marketplace_assets.settings import MarketplaceSettings, load_settings
from marketplace_assets_tests import deploy_processes

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
APP_SERVICES = ("code-server", "webserver", "daemon")
COMMANDS = {
    "code-server": deploy_processes.code_server(),
    "webserver": deploy_processes.webserver(),
    "daemon": deploy_processes.daemon(),
}
SECRET_WORDS = re.compile(r"PASSWORD|TOKEN|SECRET|SALT", re.IGNORECASE)
# A URL with a password in it: scheme://user:password@host
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@$]+:[^/\s@]+@")
VAR_NAME = r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+"
DEPLOY_VAR = re.compile(r"\b(?:MARKETPLACE|DAGSTER|POSTGRES)_[A-Z0-9_]*[A-Z0-9]\b")
COMPOSE_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for instr, args in self.instructions if instr == instruction]


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        instruction, _, args = (pending + line).partition(" ")
        result.append((instruction.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, "the Dockerfile ends in a continuation line"
    return result


def dockerfile_stages() -> list[Stage]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction, args in dockerfile_instructions((ROOT / "Dockerfile").read_text()):
        if instruction == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif stages:
            stages[-1].instructions.append((instruction, args))
        elif instruction == "ARG":
            key, _, default = args.partition("=")
            global_args[key] = default.strip('"')
    return stages


def env_of(stage: Stage) -> dict[str, str]:
    return dict(word.split("=", 1) for args in stage.all("ENV") for word in shlex.split(args))


def compose_refs() -> set[str]:
    """The ${NAME} references of the compose file (outside comments; $$ escapes one)."""
    lines = (DEPLOY / "docker-compose.yaml").read_text().splitlines()
    return set(COMPOSE_REF.findall("\n".join(line for line in lines if not line.lstrip().startswith("#"))))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    return load_yaml(DEPLOY / "docker-compose.yaml")


def helm() -> dict[str, Any]:
    return load_yaml(DEPLOY / "helm" / "values.yaml")


def env_example() -> dict[str, tuple[str, bool]]:
    """Every NAME=value line of deploy/.env.example: name -> (value, whether the line is commented out)."""
    found: dict[str, tuple[str, bool]] = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        match = re.fullmatch(rf"(#\s*)?({VAR_NAME})=(.*)", line.strip())
        if match:
            found[match.group(2)] = (match.group(3), bool(match.group(1)))
    return found


def instance_env_vars(path: Path) -> set[str]:
    """The names of Dagster's `{env: NAME}` values in an instance or workspace file."""
    return {value for key, value in walk_items(load_yaml(path)) if key == "env" and isinstance(value, str)}


def walk_items(node: Any) -> list[tuple[str, Any]]:
    """Every (key, value) of every mapping in a YAML document."""
    if isinstance(node, dict):
        return [(str(k), v) for k, v in node.items()] + [i for v in node.values() for i in walk_items(v)]
    if isinstance(node, list):
        return [i for v in node for i in walk_items(v)]
    return []


def test_dockerfile_is_multi_stage_on_one_python_image() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, f"one stage only: {[s.base for s in stages]}"
    builder, final = stages[0], stages[-1]
    assert builder.name, "the builder stage has no name for COPY --from"
    # The virtual environment links to the interpreter by path: both stages need the same image.
    assert final.base == builder.base, (builder.base, final.base)
    match = re.fullmatch(r"python:3\.(\d+)-slim(?:-\w+)?", final.base)
    assert match, f"not a python slim image: {final.base}"
    requires = re.search(r'requires-python = ">=3\.(\d+),<3\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert requires, "requires-python not found in pyproject.toml"
    # The lowest supported version: the one the locked environment is tested on.
    assert int(match.group(1)) == int(requires.group(1)), (final.base, requires.group(0))


def test_dockerfile_installs_the_locked_environment_in_two_layers() -> None:
    builder, final = dockerfile_stages()[0], dockerfile_stages()[-1]
    copies = builder.all("COPY")
    uv = [c for c in copies if "ghcr.io/astral-sh/uv:" in c]
    assert uv, "uv is not copied from the official ghcr.io/astral-sh/uv image"
    assert re.search(r"astral-sh/uv:\d+\.\d+\.\d+(@sha256:\w+)?\s", uv[0]), f"uv is not pinned: {uv[0]}"
    syncs = [args for args in builder.all("RUN") if "uv sync" in args]
    assert len(syncs) == 2, syncs
    assert all("--frozen" in s and "--no-dev" in s for s in syncs), syncs
    assert "--no-install-project" in syncs[0] and "--no-install-project" not in syncs[1], syncs
    assert env_of(builder).get("UV_PROJECT_ENVIRONMENT") == "/opt/dagster/app/.venv"
    assert any(f"--from={builder.name}" in c and "/opt/dagster/app" in c for c in final.all("COPY"))
    assert "/opt/dagster/app/.venv/bin" in env_of(final).get("PATH", "")


def test_dockerfile_runs_as_a_fixed_non_root_user() -> None:
    final = dockerfile_stages()[-1]
    users = final.all("USER")
    assert users, "the final stage has no USER: it runs as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: not a numeric non-root uid"
    assert any(f"--uid {uid}" in run for run in final.all("RUN")), f"no user is created with uid {uid}"


def test_dockerfile_instance_home_and_working_directory() -> None:
    final = dockerfile_stages()[-1]
    env = env_of(final)
    assert env.get("DAGSTER_HOME") == "/opt/dagster/home"
    assert any(c.endswith("deploy/dagster.yaml /opt/dagster/home/dagster.yaml") for c in final.all("COPY"))
    assert any("deploy/workspace.yaml" in c for c in final.all("COPY"))
    assert final.all("WORKDIR")[-1] == "/opt/dagster/app"  # where `-w deploy/workspace.yaml` resolves
    exposed = {int(p) for args in final.all("EXPOSE") for p in args.split()}
    assert exposed == {deploy_processes.WEBSERVER_PORT, deploy_processes.CODE_SERVER_PORT}


def test_dockerfile_bakes_no_secret_and_starts_the_code_server_by_default() -> None:
    instructions = [i for stage in dockerfile_stages() for i in stage.instructions]
    for stage in dockerfile_stages():
        for name in env_of(stage):
            assert not SECRET_WORDS.search(name), f"ENV {name} bakes a secret into the image"
            assert not name.startswith("MARKETPLACE_"), f"ENV {name}: settings come from the environment"
    for instruction, args in instructions:
        assert not (instruction == "ARG" and SECRET_WORDS.search(args)), f"ARG {args}: build args persist"
        assert not URL_WITH_PASSWORD.search(args), f"{instruction} {args}: a password in a URL"
    final = dockerfile_stages()[-1]
    assert not final.all("ENTRYPOINT"), "an ENTRYPOINT would prefix the compose and Helm commands"
    cmd = json.loads(final.all("CMD")[-1])
    assert cmd == deploy_processes.code_server(), cmd
    assert not any(SECRET_WORDS.search(word) for word in cmd), cmd


def test_dockerignore_sends_only_what_the_image_copies() -> None:
    text = (ROOT / ".dockerignore").read_text()
    lines = [line.strip().rstrip("/") for line in text.splitlines() if line.strip() and line[0] != "#"]
    for pattern in (".git", ".venv", "data", ".dagster", ".pytest_cache", ".ruff_cache", "**/.env"):
        assert pattern in lines, f".dockerignore does not exclude {pattern}"
    assert "**/__pycache__" in lines
    included = [line[1:] for line in lines if line.startswith("!")]
    if "*" in lines:  # everything else is excluded: each file the Dockerfile copies must be let in
        sources = [
            src.rstrip("/")
            for stage in dockerfile_stages()
            for args in stage.all("COPY")
            if "--from" not in args
            for src in [w for w in args.split() if not w.startswith("--")][:-1]
        ]
        for src in sources:
            assert any(src == inc or src.startswith(inc + "/") for inc in included), f"{src} is ignored"


def test_compose_services_have_healthchecks_and_the_production_commands() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", *APP_SERVICES}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in APP_SERVICES:
        assert services[name]["command"] == COMMANDS[name], name
        assert "entrypoint" not in services[name], name
        assert services[name]["image"] == services["code-server"]["image"], "one image for all three"
        build = services[name]["build"]
        assert (DEPLOY / build["context"]).resolve() == ROOT and build["dockerfile"] == "Dockerfile"
    checks = {name: " ".join(services[name]["healthcheck"]["test"]) for name in services}
    assert "pg_isready" in checks["postgres"]
    assert f"grpc-health-check -p {deploy_processes.CODE_SERVER_PORT}" in checks["code-server"]
    assert f"127.0.0.1:{deploy_processes.WEBSERVER_PORT}/server_info" in checks["webserver"]
    assert "dagster-daemon liveness-check" in checks["daemon"]


def test_the_healthcheck_commands_exist_in_this_dagster() -> None:
    from dagster._cli.api import api_cli
    from dagster._daemon.cli import create_dagster_daemon_cli
    from dagster_webserver import webserver

    assert "grpc-health-check" in api_cli.commands
    assert "liveness-check" in create_dagster_daemon_cli().commands
    assert '"/server_info"' in Path(webserver.__file__).read_text()


def test_compose_publishes_only_the_webserver_and_only_on_loopback() -> None:
    services, ports = compose()["services"], compose()["services"]["webserver"]["ports"]
    assert ports and all(str(p).startswith("127.0.0.1:") for p in ports), ports
    assert any(str(p).endswith(f":{deploy_processes.WEBSERVER_PORT}") for p in ports), ports
    for name in ("postgres", "code-server", "daemon"):
        assert "ports" not in services[name], f"{name} is published on the host"


def test_compose_start_order_waits_for_health() -> None:
    services = compose()["services"]
    wants = {"code-server": {"postgres"}, "webserver": {"postgres", "code-server"}}
    wants["daemon"] = wants["webserver"]
    for name, needed in wants.items():
        depends = services[name]["depends_on"]
        assert set(depends) == needed, (name, depends)
        for dependency in needed:
            assert depends[dependency] == {"condition": "service_healthy"}, (name, dependency)


def test_compose_environment_matches_the_instance_and_workspace_files() -> None:
    services = compose()["services"]
    env = {name: services[name].get("environment", {}) for name in APP_SERVICES}
    # Every process loads the instance: every variable deploy/dagster.yaml reads is set in all three.
    for name in sorted(instance_env_vars(DEPLOY / "dagster.yaml")):
        values = {service: env[service].get(name) for service in APP_SERVICES}
        assert None not in values.values() and len(set(values.values())) == 1, (name, values)
    for name in sorted(instance_env_vars(DEPLOY / "workspace.yaml")):
        for service in ("webserver", "daemon"):
            assert name in env[service], (service, name)
    for service in ("webserver", "daemon"):
        assert env[service]["DAGSTER_CODE_SERVER_HOST"] == "code-server"
        assert str(env[service]["DAGSTER_CODE_SERVER_PORT"]) == str(deploy_processes.CODE_SERVER_PORT)
    url = env["code-server"]["DAGSTER_POSTGRES_URL"]
    user, password, db = (rf"\$\{{POSTGRES_{name}[^}}]*\}}" for name in ("USER", "PASSWORD:\\?", "DB"))
    assert re.fullmatch(rf"postgresql\+psycopg2://{user}:{password}@postgres:5432/{db}", url), url
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    # The step logs are written in the code server and read by the webserver: one volume in both.
    logs = env["code-server"]["DAGSTER_COMPUTE_LOGS_DIR"]
    for service in ("code-server", "webserver"):
        assert any(v.split(":")[1] == logs for v in services[service]["volumes"]), (service, logs)


def test_compose_code_server_gets_the_settings_and_the_warehouse_volume() -> None:
    doc = compose()
    code_server = doc["services"]["code-server"]
    assert code_server["env_file"] in (".env", [".env"])
    warehouse = code_server["environment"]["MARKETPLACE_WAREHOUSE"]
    match = re.fullmatch(r"\$\{MARKETPLACE_WAREHOUSE:-(/\S+)/marketplace\.duckdb\}", warehouse)
    assert match, f"MARKETPLACE_WAREHOUSE={warehouse}: not a DuckDB default that .env can override"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in code_server["volumes"]}
    assert mounts.get(match.group(1)) in doc["volumes"], f"{match.group(1)} is not on a named volume"
    postgres_volumes = doc["services"]["postgres"]["volumes"]
    assert any(v.split(":")[0] in doc["volumes"] for v in postgres_volumes), postgres_volumes
    for name in APP_SERVICES:  # secrets come from env_file, never written into the compose file
        for key, value in doc["services"][name].get("environment", {}).items():
            assert not (key.startswith("MARKETPLACE_") and SECRET_WORDS.search(key)), key
            assert not URL_WITH_PASSWORD.search(str(value).replace("${POSTGRES_PASSWORD:?", "")), key


def test_env_example_lists_every_setting_without_a_secret() -> None:
    example = env_example()
    settings = {f"MARKETPLACE_{name.upper()}" for name in MarketplaceSettings.model_fields}
    # Read outside MarketplaceSettings: the warehouse password and the partner-metrics file.
    needed = settings | {"MARKETPLACE_WAREHOUSE_PASSWORD", "MARKETPLACE_PARTNER_METRICS"}
    needed |= compose_refs()
    assert not needed - set(example), f"missing from deploy/.env.example: {sorted(needed - set(example))}"
    for name, (value, _) in example.items():
        if SECRET_WORDS.search(name):
            assert value == "", f"{name} has a value in deploy/.env.example"


@pytest.mark.parametrize("uncomment", [False, True], ids=["as-is", "defaults-uncommented"])
def test_env_example_is_a_valid_configuration(
    uncomment: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name in [n for n in os.environ if n.startswith("MARKETPLACE_")]:
        monkeypatch.delenv(name)
    for name, (value, commented) in env_example().items():
        if name.startswith("MARKETPLACE_") and (uncomment or not commented):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("MARKETPLACE_WAREHOUSE", str(tmp_path / "marketplace.duckdb"))
    if uncomment:  # live mode then needs an account
        for name in ("MARKETPLACE_DEVELOPER_ID", "MARKETPLACE_EMAIL", "MARKETPLACE_API_TOKEN"):
            monkeypatch.setenv(name, "placeholder")
    settings = load_settings()
    assert settings.is_sandbox is not uncomment
    assert settings.automation == "running"


# Top-level keys of the dagster chart's values used here (checked against its values schema).
HELM_KEYS = {
    "global", "generatePostgresqlPasswordSecret", "postgresql", "dagster-user-deployments",
    "dagsterWebserver", "dagsterDaemon", "concurrency", "runLauncher", "computeLogManager", "telemetry",
}  # fmt: skip


def test_helm_user_deployment_runs_the_code_server_from_the_project_image() -> None:
    values = helm()
    assert set(values) <= HELM_KEYS, f"unknown top-level keys: {set(values) - HELM_KEYS}"
    user = values["dagster-user-deployments"]
    assert user["enabled"] is True
    [deployment] = user["deployments"]
    image = deployment["image"]
    compose_image = compose()["services"]["code-server"]["image"].split(":")[0]
    assert image["repository"].rsplit("/", 1)[-1] == compose_image, image
    assert image["tag"] and image["tag"] != "latest", image
    # The chart runs `dagster api grpc` when dagsterApiGrpcArgs is set, else `dagster code-server start`.
    assert "dagsterApiGrpcArgs" not in deployment
    # The chart's deployment-user.yaml: args [dagster code-server start -h 0.0.0.0 -p PORT, *codeServerArgs]
    chart_prefix = ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p"]
    argv = [*chart_prefix, str(deployment["port"]), *deployment["codeServerArgs"]]
    assert argv == deploy_processes.code_server(), argv
    uid = dockerfile_stages()[-1].all("USER")[-1].split(":")[0]
    assert deployment["podSecurityContext"]["runAsUser"] == int(uid)
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}


def test_helm_settings_come_from_secrets_only() -> None:
    values = helm()
    deployment = values["dagster-user-deployments"]["deployments"][0]
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    k8s = launcher["config"]["k8sRunLauncher"]
    assert k8s["loadInclusterConfig"] is True and "jobNamespace" in k8s
    assert k8s["resources"]["requests"]["memory"] and k8s["resources"]["limits"]["memory"]
    assert deployment["envSecrets"] == k8s["envSecrets"] == [{"name": "marketplace-assets-env"}]
    # The instance database's password from an existing Secret, not from these values.
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    for key, value in walk_items(values):
        literal = isinstance(value, str | int | float) and not isinstance(value, bool)
        if SECRET_WORDS.search(key) and not key.endswith("SecretName") and literal:
            assert value == "", f"{key}: {value!r} written in the values"
        assert not key.startswith("MARKETPLACE_"), f"{key} set inline instead of through the Secret"
        if isinstance(value, str):
            assert not URL_WITH_PASSWORD.search(value), f"{key}: a password in a URL"


def test_helm_daemon_policy_is_the_instance_policy() -> None:
    instance = load_yaml(DEPLOY / "dagster.yaml")
    daemon = helm()["dagsterDaemon"]
    assert daemon["enabled"] is True
    coordinator = daemon["runCoordinator"]
    assert coordinator["enabled"] is True and coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert queued["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
    assert helm()["concurrency"]["pools"]["defaultLimit"] == instance["concurrency"]["pools"]["default_limit"]
    monitoring, retries = daemon["runMonitoring"], daemon["runRetries"]
    assert monitoring["enabled"] is True and instance["run_monitoring"]["enabled"] is True
    for key in ("cancel_timeout_seconds", "poll_interval_seconds", "free_slots_after_run_end_seconds"):
        camel = re.sub(r"_(\w)", lambda m: m.group(1).upper(), key)
        assert monitoring[camel] == instance["run_monitoring"][key], key
    assert retries["enabled"] is True and retries["maxRetries"] == instance["run_retries"]["max_retries"]
    assert retries["retryOnAssetOrOpFailure"] == instance["run_retries"]["retry_on_asset_or_op_failure"]


def documented_names(text: str) -> set[str]:
    """Variable names in the README, with its shorthands expanded: `A_B_DAYS`, `_WEEKS` and A_B_DAYS/WEEKS."""
    names = set(re.findall(rf"(?<![A-Za-z0-9_]){VAR_NAME}(?![A-Za-z0-9_])", text))
    for match in re.finditer(rf"({VAR_NAME})`?((?:(?:`?, `|/)_?[A-Z0-9]+(?![A-Z0-9_]))+)", text):
        stem = match.group(1).rsplit("_", 1)[0]
        names.update(f"{stem}_{suffix}" for suffix in re.findall(r"[A-Z0-9]+", match.group(2)))
    return names


def deploy_var_names() -> set[str]:
    compose_text = (DEPLOY / "docker-compose.yaml").read_text()
    names = compose_refs() | set(DEPLOY_VAR.findall(compose_text))
    for service in compose()["services"].values():
        names |= set(service.get("environment", {}))
    names |= set(env_example())
    return names | set(DEPLOY_VAR.findall((DEPLOY / "helm" / "values.yaml").read_text()))


def test_every_deployment_variable_is_documented_in_the_readme() -> None:
    shorthand = documented_names("`MARKETPLACE_X_DAYS`, `_WEEKS`; `MARKETPLACE_E`, `MARKETPLACE_Y`; A_B/C")
    expected = "MARKETPLACE_X_DAYS MARKETPLACE_X_WEEKS MARKETPLACE_E MARKETPLACE_Y A_B A_C"
    assert shorthand == set(expected.split()), shorthand
    names = deploy_var_names()
    assert {"DAGSTER_POSTGRES_URL", "POSTGRES_PASSWORD", "MARKETPLACE_API_TOKEN"} <= names  # the scan works
    missing = sorted(names - documented_names((ROOT / "README.md").read_text()))
    assert not missing, f"named by the deployment files but not in README.md: {', '.join(missing)}"
