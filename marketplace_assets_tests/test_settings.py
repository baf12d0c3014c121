"""Settings: durations and timeouts reach the resource; bad configuration is refused at load."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace_assets.definitions import build_definitions, marketplace_resource
from marketplace_assets.export_sensors import ExportSensorSettings
from marketplace_assets.settings import ConfigurationError, load_settings

LIVE_ENV = {
    "MARKETPLACE_DEVELOPER_ID": "dev-live",
    "MARKETPLACE_EMAIL": "someone@example.com",
    "MARKETPLACE_API_TOKEN": "live-Token-ABCDEF123456",
}
MODES = pytest.mark.parametrize("env", [{}, LIVE_ENV], ids=["sandbox", "live"])


def _set(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


# -- durations and timeouts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3h", 3 * 3600),
        ("90m", 90 * 60),
        ("45s", 45),
        ("1h30m", 5400),
        ("1H30M", 5400),
        ("1d", 86400),
        ("2.5m", 150),
        ("7200", 7200),
        ("2.5", 2.5),
        ("PT3H", 3 * 3600),
        ("P1DT2H", 26 * 3600),
        (" 90m ", 5400),
        ("", 3 * 3600),  # blank is unset: the default
    ],
)
def test_export_deadline_forms(clean_env: pytest.MonkeyPatch, value: str, seconds: float) -> None:
    clean_env.setenv("MARKETPLACE_EXPORT_DEADLINE", value)
    assert load_settings().export_deadline_seconds == seconds


def test_defaults(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.export_deadline_seconds == 3 * 3600
    assert (settings.read_timeout, settings.connect_timeout) == (120.0, 10.0)


@pytest.mark.parametrize(
    "value", ["3 hours", "abc", "1h30", "h", "0", "0s", "PT0S", "-5", "-1h", "inf", "nan"]
)
def test_bad_export_deadline_names_the_variable(clean_env: pytest.MonkeyPatch, value: str) -> None:
    clean_env.setenv("MARKETPLACE_EXPORT_DEADLINE", value)
    with pytest.raises(ConfigurationError, match=rf"MARKETPLACE_EXPORT_DEADLINE={value!r}.*3h, 90m"):
        load_settings()


@pytest.mark.parametrize("name", ["MARKETPLACE_READ_TIMEOUT", "MARKETPLACE_CONNECT_TIMEOUT"])
@pytest.mark.parametrize("value", ["0", "-1", "abc", "inf", "10s"])
def test_bad_timeout_names_the_variable(clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ConfigurationError, match=rf"{name}={value!r}"):
        load_settings()


def test_blank_timeouts_are_the_defaults(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MARKETPLACE_READ_TIMEOUT", "")
    clean_env.setenv("MARKETPLACE_CONNECT_TIMEOUT", " ")
    settings = load_settings()
    assert (settings.read_timeout, settings.connect_timeout) == (120.0, 10.0)


@MODES
def test_resource_gets_deadline_and_timeouts(clean_env: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    _set(clean_env, env)
    clean_env.setenv("MARKETPLACE_EXPORT_DEADLINE", "1h30m")
    clean_env.setenv("MARKETPLACE_READ_TIMEOUT", "30")
    clean_env.setenv("MARKETPLACE_CONNECT_TIMEOUT", "2.5")
    settings = load_settings()
    assert settings.is_sandbox is (not env)
    resource = build_definitions(settings).resources["marketplace"]
    assert resource.sandbox is (not env)
    assert (resource.export_deadline, resource.read_timeout, resource.connect_timeout) == (5400.0, 30.0, 2.5)


@MODES
def test_resource_gets_defaults(clean_env: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    _set(clean_env, env)
    resource = marketplace_resource(load_settings())
    assert (resource.export_deadline, resource.read_timeout, resource.connect_timeout) == (
        10800.0,
        120.0,
        10.0,
    )


# -- MARKETPLACE_BASE_URL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "api.atlassian.com/marketplace",
        "ftp://api.atlassian.com/marketplace",
        "localhost:8000",
        "localhost:8000/marketplace",
        "https://",
        "http:///marketplace",
        "https://example.com:port/marketplace",
        " https://api.atlassian.com/marketplace",
    ],
)
@MODES
def test_bad_base_url_is_refused(clean_env: pytest.MonkeyPatch, env: dict[str, str], url: str) -> None:
    _set(clean_env, env)
    clean_env.setenv("MARKETPLACE_BASE_URL", url)
    with pytest.raises(ConfigurationError, match=rf"MARKETPLACE_BASE_URL={url!r}.*http:// or https://"):
        load_settings()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ftp://admin:s3cret-pw@example.com/marketplace", "ftp://***@example.com/marketplace"),
        ("admin:s3cret-pw@example.com/marketplace", "***@example.com/marketplace"),
        ("localhost:8000/x?next=a@b", "localhost:8000/x?next=a@b"),
    ],
)
def test_base_url_userinfo_is_not_shown(clean_env: pytest.MonkeyPatch, url: str, shown: str) -> None:
    clean_env.setenv("MARKETPLACE_BASE_URL", url)
    with pytest.raises(ConfigurationError, match="MARKETPLACE_BASE_URL") as caught:
        load_settings()
    assert repr(shown) in str(caught.value)
    assert "s3cret" not in str(caught.value) and "admin" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    ["http://localhost:8000/marketplace", "https://api.atlassian.com/marketplace/", "HTTPS://Example.com"],
)
def test_good_base_url_is_accepted(clean_env: pytest.MonkeyPatch, url: str) -> None:
    clean_env.setenv("MARKETPLACE_BASE_URL", url)
    assert load_settings().base_url == url


# -- the warehouse path --------------------------------------------------------------------------------


def test_warehouse_parent_is_a_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a directory")
    clean_env.setenv("MARKETPLACE_WAREHOUSE", "notes.txt/marketplace.duckdb")
    with pytest.raises(
        ConfigurationError,
        match=r"MARKETPLACE_WAREHOUSE='notes.txt/marketplace.duckdb'.*notes.txt is a file, not a directory",
    ):
        load_settings()


def test_warehouse_ancestor_is_a_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a directory")
    deep = tmp_path / "notes.txt" / "a" / "b" / "marketplace.duckdb"
    clean_env.setenv("MARKETPLACE_WAREHOUSE", str(deep))
    with pytest.raises(
        ConfigurationError, match=r"MARKETPLACE_WAREHOUSE=.*notes.txt is a file, not a directory"
    ):
        load_settings()


@MODES
def test_default_warehouse_under_a_file(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str]
) -> None:
    _set(clean_env, env)
    (tmp_path / "data").write_text("a file where the data directory would go")
    default = "data/marketplace.duckdb" if env else "data/sandbox.duckdb"
    with pytest.raises(
        ConfigurationError,
        match=rf"'{default}' \(the default of MARKETPLACE_WAREHOUSE .*data is a file, not a directory",
    ):
        load_settings()


def test_warehouse_is_a_directory(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "warehouse").mkdir()
    clean_env.setenv("MARKETPLACE_WAREHOUSE", "warehouse")
    with pytest.raises(ConfigurationError, match=r"MARKETPLACE_WAREHOUSE='warehouse' is a directory"):
        load_settings()


def test_warehouse_in_missing_directories_is_accepted(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("MARKETPLACE_WAREHOUSE", "new/sub/marketplace.duckdb")
    assert load_settings().warehouse_location == "new/sub/marketplace.duckdb"
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_postgresql_url_is_not_treated_as_a_path(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # `postgresql:` would be a file here: as a path, it would be refused as "a file, not a directory".
    (tmp_path / "postgresql:").write_text("")
    url = "postgresql://user:pw@db.example.com:5432/marketplace"
    clean_env.setenv("MARKETPLACE_WAREHOUSE", url)
    assert load_settings().warehouse_location == url


def test_other_warehouse_url_is_refused_without_its_secret(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MARKETPLACE_WAREHOUSE", "mysql://user:s3cret@db.example.com/marketplace")
    with pytest.raises(
        ConfigurationError, match=r"MARKETPLACE_WAREHOUSE has the unsupported URL scheme 'mysql'"
    ) as e:
        load_settings()
    assert "s3cret" not in str(e.value)


# -- a warehouse this process cannot write -------------------------------------------------------------

# Runs as root until it has imported everything and checked each path once (root passes: permission
# bits do not apply to it), then becomes `nobody` for good and checks each path again. The interpreter
# starts as root because it may live where `nobody` cannot reach (here: pyenv under /root, mode 0700).
UNPRIVILEGED_CHECK = """
import json, os, pwd, sys
from marketplace_assets.settings import ConfigurationError, load_settings

def check(path):
    os.environ["MARKETPLACE_WAREHOUSE"] = path
    try:
        load_settings()
    except ConfigurationError as exc:
        return str(exc)
    return None

as_root = [check(path) for path in sys.argv[1:]]
user = pwd.getpwnam("nobody")
os.setgroups([])
os.setgid(user.pw_gid)
os.setuid(user.pw_uid)
print(json.dumps({"uid": os.getuid(), "euid": os.geteuid(), "as_root": as_root,
                  "as_nobody": [check(path) for path in sys.argv[1:]]}))
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory an unprivileged user can traverse: under the world-readable temp dir, mode 0o755."""
    base = Path(tempfile.mkdtemp(prefix="marketplace-settings-", dir=tempfile.gettempdir()))
    base.chmod(0o755)
    try:
        yield base
    finally:
        for path in base.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(base)


def test_unwritable_warehouse_is_refused(clean_env: pytest.MonkeyPatch, shared_dir: Path) -> None:
    read_only = shared_dir / "read-only.duckdb"
    read_only.write_bytes(b"")
    read_only.chmod(0o444)
    locked = shared_dir / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    paths = [str(read_only), str(locked / "marketplace.duckdb")]
    clean_env.setenv("MARKETPLACE_SANDBOX", "1")
    clean_env.chdir(shared_dir)  # pydantic-settings looks for .env here, also as nobody

    if os.geteuid() == 0:
        for ancestor in [shared_dir, *shared_dir.parents]:
            assert ancestor.stat().st_mode & stat.S_IXOTH, f"{ancestor} is not traversable by nobody"
        result = subprocess.run(
            [sys.executable, "-c", UNPRIVILEGED_CHECK, *paths],
            cwd=shared_dir,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["uid"] == report["euid"] != 0
        assert report["as_root"] == [None, None]  # root bypasses the bits: why this runs as nobody
        errors = report["as_nobody"]
        user = "nobody"
    else:
        errors = []
        for path in paths:
            clean_env.setenv("MARKETPLACE_WAREHOUSE", path)
            with pytest.raises(ConfigurationError) as caught:
                load_settings()
            errors.append(str(caught.value))
        user = ""

    file_error, dir_error = errors
    assert file_error.startswith(f"MARKETPLACE_WAREHOUSE={paths[0]!r}: the file {read_only} exists but")
    assert f"(user {user}" in file_error and "cannot write it" in file_error
    assert dir_error.startswith(f"MARKETPLACE_WAREHOUSE={paths[1]!r}:")
    assert f"cannot create files in the directory {locked}" in dir_error


# -- MARKETPLACE_EXPORT_POLL_INTERVAL ----------------------------------------------------------------


@pytest.mark.parametrize(("env", "seconds"), [({}, 1.0), (LIVE_ENV, 30.0)], ids=["sandbox", "live"])
def test_export_poll_interval_defaults_by_mode(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], seconds: float
) -> None:
    # Live exports take minutes, so 30 s between late polls; the sandbox's complete in a few polls.
    _set(clean_env, env)
    settings = load_settings()
    assert settings.export_poll_interval_seconds == seconds
    assert marketplace_resource(settings).export_poll_interval == seconds


@MODES
@pytest.mark.parametrize(("value", "seconds"), [("10", 10.0), ("2.5", 2.5), (" 60 ", 60.0)])
def test_export_poll_interval_reaches_the_resource(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], value: str, seconds: float
) -> None:
    _set(clean_env, env)
    clean_env.setenv("MARKETPLACE_EXPORT_POLL_INTERVAL", value)
    resource = build_definitions(load_settings()).resources["marketplace"]
    assert resource.sandbox is (not env)
    assert resource.export_poll_interval == seconds


@MODES
def test_blank_export_poll_interval_is_the_default(
    clean_env: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    _set(clean_env, env)
    clean_env.setenv("MARKETPLACE_EXPORT_POLL_INTERVAL", " ")
    assert load_settings().export_poll_interval_seconds == (30.0 if env else 1.0)


@pytest.mark.parametrize("value", ["0", "-5", "abc", "inf", "nan", "30s"])
def test_bad_export_poll_interval_names_the_variable(clean_env: pytest.MonkeyPatch, value: str) -> None:
    clean_env.setenv("MARKETPLACE_EXPORT_POLL_INTERVAL", value)
    with pytest.raises(ConfigurationError, match=rf"MARKETPLACE_EXPORT_POLL_INTERVAL={value!r}") as caught:
        load_settings()
    assert "the export poll interval are seconds above 0" in str(caught.value)


# -- MARKETPLACE_SENSOR_INTERVAL -----------------------------------------------------------------------

SENSOR_INTERVALS = {
    "marketplace_apps_sensor": 60,
    "current_licenses_after_license_history": 30,
    "metrics_after_raw_inputs": 30,
    "sales_transactions_export_sensor": 30,
    "licenses_licenses_export_sensor": 30,
    "marketing_attribution_export_sensor": 30,
    "catalog_snapshot_sensor": 3600,
}
SHOW_INTERVALS = (
    "import json; from marketplace_assets.definitions import defs; "
    "print(json.dumps({s.name: s.minimum_interval_seconds for s in defs.sensors}))"
)


@pytest.mark.parametrize("value", ["", "5"], ids=["unset", "5"])
def test_sensor_interval_replaces_every_sensors_own(clean_env: pytest.MonkeyPatch, value: str) -> None:
    # A fresh process: two of the sensors are defined when their module is first imported.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETPLACE_")}
    env["MARKETPLACE_SENSOR_INTERVAL"] = value
    shown = subprocess.run(
        [sys.executable, "-c", SHOW_INTERVALS], env=env, capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    expected = {name: int(value) for name in SENSOR_INTERVALS} if value else SENSOR_INTERVALS
    assert json.loads(shown.stdout.strip().splitlines()[-1]) == expected


def test_export_sensor_polls_once_a_tick_at_the_sensor_interval(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MARKETPLACE_SENSOR_INTERVAL", "7")
    assert ExportSensorSettings().minimum_interval_seconds == 7
    assert ExportSensorSettings(minimum_interval_seconds=45).minimum_interval_seconds == 45


@pytest.mark.parametrize("value", ["0", "-5", "abc", "2.5", "86401"])
def test_bad_sensor_interval_names_the_variable(clean_env: pytest.MonkeyPatch, value: str) -> None:
    clean_env.setenv("MARKETPLACE_SENSOR_INTERVAL", value)
    with pytest.raises(ConfigurationError, match=rf"MARKETPLACE_SENSOR_INTERVAL={value!r}"):
        load_settings()
