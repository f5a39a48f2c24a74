"""What a newcomer meets on a fresh clone: scripts that work from any directory, `manage.py` by
hand without inventing a SECRET_KEY, tests that stay out of the local run's Redis database, and
instructions without paths of somebody else's machine; and the suite's own guards (no name
resolution, no `xdist_group`)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import pytest
from django.conf import settings

REPO = Path(__file__).resolve().parents[4]


def bash(script: str, *, env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(["bash", "-c", script], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def bare_env(*drop: str) -> dict[str, str]:
    """This environment less the project's variables: what a new shell has."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BILLING_") and k not in drop}


def test_local_env_points_at_this_checkout_from_any_directory(tmp_path):
    out = bash(
        f"source {REPO}/scripts/local_env.sh; echo $BILLING_LOCAL_DIR; echo $REDIS_URL",
        env=bare_env("REDIS_URL"),
        cwd=tmp_path,
    )
    local_dir, redis_url = out.split()
    assert local_dir == str(REPO / ".local")
    assert redis_url.endswith(":56379/0")  # the local run's database


def test_manage_sh_runs_manage_py_without_a_secret_key(tmp_path):
    """Production settings refuse to start without SECRET_KEY; the wrapper runs DEBUG on."""
    env = bare_env("SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE")
    done = subprocess.run(
        [sys.executable, "manage.py", "check"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and "SECRET_KEY must be set" in done.stderr
    out = bash(f"cd {tmp_path} && {REPO}/scripts/manage.sh check", env=env, cwd=tmp_path)
    assert "no issues" in out


def test_the_tests_use_a_redis_database_of_their_own():
    database = int(urlsplit(settings.REDIS_URL).path.strip("/") or 0)
    assert database != 0, "database 0 is the local run's (make run): its /readyz would list the tests' heartbeats"
    assert urls_of_test_settings().redis.endswith("/1")


def test_each_xdist_worker_has_a_redis_database_and_a_vhost_of_its_own():
    first, third = urls_of_test_settings(PYTEST_XDIST_WORKER="gw0"), urls_of_test_settings(PYTEST_XDIST_WORKER="gw2")
    assert (first.redis[-2:], third.redis[-2:]) == ("/1", "/3")  # the base database plus the worker's number
    assert first.rabbitmq.endswith(":55672/billing-tests-gw0") and third.rabbitmq.endswith(":55672/billing-tests-gw2")
    named = urls_of_test_settings(PYTEST_XDIST_WORKER="gw1", RABBITMQ_URL="amqp://guest:guest@127.0.0.1:55672/h_ci")
    assert named.rabbitmq == "amqp://guest:guest@127.0.0.1:55672/h_ci-gw1"
    # A process a worker's test starts inherits the derived URLs and derives nothing more.
    child = urls_of_test_settings(PYTEST_XDIST_WORKER="gw2", BILLING_TEST_WORKER="gw2", **third.as_env())
    assert child == third


class Urls(NamedTuple):
    redis: str
    rabbitmq: str

    def as_env(self) -> dict[str, str]:
        return {"REDIS_URL": self.redis, "RABBITMQ_URL": self.rabbitmq}


def urls_of_test_settings(**env: str) -> Urls:
    """REDIS_URL and RABBITMQ_URL as config.test_settings computes them in a fresh process with
    `env` (and none of the project's variables, nor this session's xdist worker)."""
    out = subprocess.run(
        [sys.executable, "-c", "import config.test_settings as s; print(s.REDIS_URL); print(s.RABBITMQ_URL)"],
        env={
            **bare_env("REDIS_URL", "RABBITMQ_URL", "PYTEST_XDIST_WORKER"),
            "PYTHONPATH": str(REPO / "backend"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return Urls(*out.split())


MACHINE_PATH = re.compile(r"/work/|/home/\w+/|/Users/\w+/")


def test_docs_scripts_and_benches_name_no_path_of_one_machine():
    tracked = subprocess.run(
        [
            "git",
            "ls-files",
            "README.md",
            "Makefile",
            ".env.example",
            "pyproject.toml",
            "docs",
            "bench",
            "scripts",
            "backend/config",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert "docs/api.md" in tracked
    offending = [
        f"{name}:{number}"
        for name in tracked
        for number, line in enumerate((REPO / name).read_text(errors="replace").splitlines(), 1)
        if MACHINE_PATH.search(line)
    ]
    assert offending == []


def test_the_tests_resolve_no_names_but_this_machines():
    # Refused by the guard (its message), so at once: the resolver is never asked.
    with pytest.raises(socket.gaierror, match="tests resolve no names"):
        socket.getaddrinfo("erp.example.com", 443, type=socket.SOCK_STREAM)
    assert {info[4][0] for info in socket.getaddrinfo("localhost", 80, socket.AF_INET)} == {"127.0.0.1"}
    assert socket.getaddrinfo("127.0.0.1", 80, socket.AF_INET, socket.SOCK_STREAM)[0][4] == ("127.0.0.1", 80)


def test_a_test_marked_xdist_group_fails_saying_why(request):
    root_conftest = request.config.pluginmanager.get_plugin(str(REPO / "backend" / "conftest.py"))
    pytest_runtest_setup = root_conftest.pytest_runtest_setup

    class Marked:
        def get_closest_marker(self, name: str) -> object | None:
            return pytest.mark.xdist_group("crash").mark if name == "xdist_group" else None

    with pytest.raises(pytest.fail.Exception, match="pytest-xdist#1386"):
        pytest_runtest_setup(Marked())  # type: ignore[arg-type]
    pytest_runtest_setup(request.node)  # an unmarked test runs
