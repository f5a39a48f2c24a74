"""The deployment files hold together (no Docker engine runs here, so their structure is checked):
docker-compose.yml, the Prometheus scrape config, the Grafana provisioning, Procfile,
railway.toml (+ per-service files), the gunicorn config and the Dockerfile."""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from django.urls import resolve

REPO = Path(__file__).resolve().parents[4]
APP_SERVICES = (
    "migrate",
    "evolution_sandbox",
    "web",
    "billing_consumer",
    "billing_periodic",
    "billing_callbacks",
    "charges_periodic",
    "privacy_retention",
)
PROCESS_SERVICES = ("web", "billing_consumer", "billing_periodic", "billing_callbacks", "charges_periodic")
BACKING = ("postgres", "redis", "rabbitmq")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def prometheus() -> dict:
    return yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())


def command_text(service: dict) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def procfile() -> dict[str, str]:
    entries = {}
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


class TestCompose:
    def test_every_part_of_the_system_is_a_service(self, services):
        assert set(services) >= {*BACKING, *APP_SERVICES, "prometheus", "grafana"}

    def test_rabbitmq_has_the_management_ui(self, services):
        assert "management" in services["rabbitmq"]["image"]
        assert any("15672" in str(port) for port in services["rabbitmq"]["ports"])

    def test_app_services_share_the_one_image_and_its_environment(self, services):
        for name in APP_SERVICES:
            service = services[name]
            assert service["build"] == "." and service["image"] == "billing-service:local", name
            env = service["environment"]
            for key in ("DATABASE_URL", "REDIS_URL", "RABBITMQ_URL", "SECRET_KEY", "METRICS_TOKEN"):
                assert env.get(key), f"{name} lacks {key}"
            assert env["DEBUG"] == "0" and env["LOG_FORMAT"] == "json"
            assert "@postgres:" in env["DATABASE_URL"] and "@rabbitmq:" in env["RABBITMQ_URL"]
            assert "//redis:" in env["REDIS_URL"]

    def test_commands(self, services):
        assert command_text(services["migrate"]) == "python manage.py migrate --noinput"
        assert command_text(services["web"]) == "gunicorn --config deploy/gunicorn.conf.py"
        assert command_text(services["billing_consumer"]) == "python manage.py run_billing_consumer"
        assert command_text(services["billing_periodic"]) == "python manage.py run_billing_periodic_tasks"
        assert command_text(services["billing_callbacks"]) == "python manage.py run_billing_callbacks"
        sandbox = command_text(services["evolution_sandbox"])
        assert "manage.py run_evolution_sandbox --host 0.0.0.0 --port 8081" in sandbox
        assert services["migrate"]["restart"] == "no"

    def test_processes_start_after_the_backing_services_and_the_migration(self, services):
        for name in PROCESS_SERVICES:
            depends = services[name]["depends_on"]
            for backing in BACKING:
                assert depends[backing]["condition"] == "service_healthy", (name, backing)
            assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert services["billing_consumer"]["depends_on"]["evolution_sandbox"]["condition"] == "service_healthy"
        assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"

    def test_every_long_running_service_has_a_health_check(self, services):
        for name, service in services.items():
            if name == "migrate":
                continue
            check = service.get("healthcheck")
            assert check and check.get("test"), f"{name} has no health check"
        assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
        for name in ("billing_consumer", "billing_periodic", "billing_callbacks", "charges_periodic"):
            port = services[name]["environment"]["METRICS_PORT"]
            assert f"127.0.0.1:{port}/healthz" in " ".join(services[name]["healthcheck"]["test"]), name
            assert services[name]["environment"]["METRICS_ADDR"] == "0.0.0.0"

    def test_the_consumer_gets_time_to_finish_its_message_on_stop(self, services):
        assert services["billing_consumer"]["stop_grace_period"] == "45s"

    def test_prometheus_and_grafana_mount_files_that_exist(self, services):
        for service in ("prometheus", "grafana"):
            for volume in services[service]["volumes"]:
                source = volume.split(":")[0]
                if source.startswith("./"):
                    assert (REPO / source).exists(), f"{service} mounts missing {source}"
        assert (
            "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]
        )


class TestPrometheus:
    def test_it_scrapes_every_process_kind_where_it_serves_metrics(self, prometheus, services):
        jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
        expected_ports = {"web": "8000"}
        for name in ("billing_consumer", "billing_periodic", "billing_callbacks", "charges_periodic"):
            expected_ports[name] = services[name]["environment"]["METRICS_PORT"]
        for name, port in expected_ports.items():
            job = jobs[name]
            assert job["metrics_path"] == "/metrics"
            sd = job["dns_sd_configs"][0]
            assert sd["names"] == [name] and str(sd["port"]) == str(port), name

    def test_every_scrape_sends_the_token_the_prometheus_service_writes(self, prometheus, services):
        token_files = {
            job["authorization"]["credentials_file"]
            for job in prometheus["scrape_configs"]
            if job["job_name"] != "prometheus"
        }
        assert len(token_files) == 1
        assert next(iter(token_files)) in command_text(services["prometheus"])
        web_token = services["web"]["environment"]["METRICS_TOKEN"]
        assert services["prometheus"]["environment"]["METRICS_TOKEN"] == web_token

    def test_the_web_metrics_path_is_a_real_route(self):
        assert resolve("/metrics").url_name == "metrics"


class TestGrafana:
    def test_the_datasource_and_dashboard_are_provisioned(self):
        datasource = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
        assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
        provider = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/billing.yml").read_text())
        assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"

    def test_the_dashboard_has_the_panels_and_only_real_metrics(self):
        from prometheus_client import REGISTRY

        import apps.billing.metrics  # noqa: F401 - registers every metric

        dashboard = json.loads((REPO / "deploy/grafana/dashboards/billing.json").read_text())
        titles = " | ".join(panel["title"].lower() for panel in dashboard["panels"])
        for wanted in (
            "messages sent by type",
            "messages failed by type",
            "pace per instance",
            "queue backlog",
            "provider latency",
            "paused queues by reason",
        ):
            assert wanted in titles, wanted
        known = set()
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
        for metric in REGISTRY.collect():
            known.update(metric.name + suffix for suffix in suffixes.get(metric.type, [""]))
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                for name in re.findall(r"\b((?:billing|evolution)_[a-z_]+)\b", target["expr"]):
                    assert name in known, f"{panel['title']}: unknown metric {name}"


class TestProcfileAndRailway:
    def test_procfile_names_every_process(self):
        entries = procfile()
        assert set(entries) == {
            "release",
            "web",
            "billing_consumer",
            "billing_periodic",
            "billing_callbacks",
            "charges_periodic",
            "privacy_retention",
        }
        assert entries["release"] == "python manage.py migrate --noinput"
        assert entries["web"] == "gunicorn --config deploy/gunicorn.conf.py"
        assert entries["billing_consumer"] == "python manage.py run_billing_consumer"
        assert entries["billing_periodic"] == "python manage.py run_billing_periodic_tasks"
        assert entries["billing_callbacks"] == "python manage.py run_billing_callbacks"

    def test_railway_builds_the_dockerfile_and_checks_readiness(self):
        config = tomllib.loads((REPO / "railway.toml").read_text())
        assert config["build"]["builder"] == "DOCKERFILE"
        assert (REPO / config["build"]["dockerfilePath"]).exists()
        deploy = config["deploy"]
        assert deploy["startCommand"] == procfile()["web"]
        assert deploy["preDeployCommand"] == procfile()["release"]
        assert deploy["healthcheckPath"] == "/readyz" and resolve("/readyz").url_name == "readyz"
        assert deploy["restartPolicyType"] in {"ON_FAILURE", "ALWAYS"} and deploy["restartPolicyMaxRetries"] > 0

    @pytest.mark.parametrize(
        "process",
        ["billing_consumer", "billing_periodic", "billing_callbacks", "charges_periodic", "privacy_retention"],
    )
    def test_each_background_process_has_its_railway_service_file(self, process):
        config = tomllib.loads((REPO / f"deploy/railway/{process}.toml").read_text())
        assert config["build"]["builder"] == "DOCKERFILE"
        assert config["deploy"]["startCommand"] == procfile()[process]
        assert config["deploy"]["restartPolicyType"] == "ALWAYS"
        assert "healthcheckPath" not in config["deploy"]  # no HTTP traffic: liveness is the heartbeat


class TestImage:
    def test_the_gunicorn_config_serves_asgi_with_multiprocess_metrics(self):
        tree = ast.parse((REPO / "deploy/gunicorn.conf.py").read_text())
        assigned = {
            node.targets[0].id: node.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
        }
        assert ast.literal_eval(assigned["wsgi_app"]) == "config.asgi:application"
        assert ast.literal_eval(assigned["worker_class"]) == "uvicorn.workers.UvicornWorker"
        assert "PROMETHEUS_MULTIPROC_DIR" in ast.unparse(assigned["MULTIPROC_DIR"])
        hooks = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert {"on_starting", "child_exit"} <= hooks

    def test_the_dockerfile_is_slim_non_root_and_collects_static_files(self):
        text = (REPO / "Dockerfile").read_text()
        assert re.search(r"^FROM python:[\d.]+-slim", text, re.M)
        users = re.findall(r"^USER (\S+)", text, re.M)
        assert users and users[-1] not in ("root", "0")
        assert "collectstatic --noinput" in text
        assert 'CMD ["gunicorn", "--config", "deploy/gunicorn.conf.py"]' in text
        # The runtime install cuts requirements.txt at its "# Tests" line: it must exist.
        assert "# Tests" in (REPO / "requirements.txt").read_text()
        assert "whitenoise.middleware.WhiteNoiseMiddleware" in (REPO / "backend/config/settings.py").read_text()
