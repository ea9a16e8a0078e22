"""The deploy/ files as far as this machine can check them: they parse, name what they must, agree.

Checked here: every YAML / JSON / NDJSON file parses; compose names its services, keeps the
scalable ones free of fixed names and host ports, and waits on health; the Kubernetes objects
have the kinds and API versions KubeRay and Kubernetes expect; the Helm templates use only
values that values.yaml defines (and values.yaml holds nothing unused); the Grafana dashboard
queries only series the code exports; the image's entry point dispatches as documented.
`docker compose config` and `helm template` run only where those tools are installed.
"""

import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "videopipe"
COMPOSE = DEPLOY / "compose.yaml"
SERVICES = {"redis", "elasticsearch", "kibana", "ray-head", "ray-worker", "crawl", "work", "es-setup"}
SCALABLE = {"crawl", "ray-worker"}


def load_all(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def k8s_objects() -> list[dict]:
    return [d for p in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in load_all(p)]


# -- every file parses ----------------------------------------------------------------------------
def manifest_files() -> list[Path]:
    templates = CHART / "templates"
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix in {".yaml", ".yml", ".json", ".ndjson"}
                  and templates not in p.parents)  # fmt: skip


def test_every_manifest_parses():
    files = manifest_files()
    assert {p.relative_to(DEPLOY).as_posix() for p in files} >= {
        "compose.yaml", "k8s/raycluster.yaml", "k8s/rayjob.yaml", "k8s/crawl.yaml", "k8s/config.yaml",
        "helm/videopipe/Chart.yaml", "helm/videopipe/values.yaml", "prometheus/prometheus.yml",
        "grafana/dashboards/videopipe.json", "grafana/provisioning/datasources/prometheus.yaml",
        "grafana/provisioning/dashboards/videopipe.yaml"}  # fmt: skip
    for path in files:
        text = path.read_text()
        if path.suffix == ".json":
            json.loads(text)
        elif path.suffix == ".ndjson":
            assert [json.loads(line) for line in text.splitlines() if line.strip()], path
        else:
            assert load_all(path), f"{path} is empty"


# -- docker compose ---------------------------------------------------------------------------------
def test_compose_names_the_services_and_keeps_the_scalable_ones_scalable():
    services = compose()["services"]
    assert SERVICES <= set(services)
    for name in SCALABLE:
        assert "container_name" not in services[name], name
        assert "ports" not in services[name], f"{name} publishes a host port: it could not scale"
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"


def test_compose_waits_on_health_and_runs_the_project_commands():
    services = compose()["services"]
    for name in ("redis", "elasticsearch", "kibana", "ray-head", "crawl", "work"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert services["es-setup"]["command"] == ["es-setup"]
    assert services["es-setup"]["depends_on"]["elasticsearch"]["condition"] == "service_healthy"
    assert services["es-setup"]["restart"] == "no"
    work = services["work"]["command"]
    assert work[0] == "work" and "--metrics-port" in work
    assert work[work.index("--ray-address") + 1] == "ray://ray-head:10001"
    assert services["work"]["depends_on"]["es-setup"]["condition"] == "service_completed_successfully"
    assert services["crawl"]["command"][0] == "crawl"
    assert "--address=ray-head:6379" in services["ray-worker"]["command"]
    es = services["elasticsearch"]
    assert re.search(r":(\$\{ELASTIC_VERSION:-)?9\.", es["image"]), es["image"]
    assert re.search(r":(\$\{ELASTIC_VERSION:-)?9\.", services["kibana"]["image"])
    assert es["environment"]["discovery.type"] == "single-node"
    assert es["environment"]["xpack.security.enabled"] == "true"
    for name in ("work", "crawl", "ray-head", "ray-worker", "es-setup"):
        env = services[name]["environment"]
        assert env["REDIS_URL"] == "redis://redis:6379/0" and env["ELASTICSEARCH_URL"] == "http://elasticsearch:9200"
        assert services[name]["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert services["ray-gpu-worker"]["profiles"] == ["gpu"]
    assert services["ray-gpu-worker"]["build"]["args"]["TORCH_VARIANT"] != "cpu"
    assert {"prometheus", "grafana"} <= {n for n, s in services.items() if "metrics" in s.get("profiles", [])}


def test_prometheus_scrapes_the_ports_the_services_serve_on():
    services = compose()["services"]
    ports = {}
    for job in yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]:
        for sd in job["dns_sd_configs"]:
            for name in sd["names"]:
                ports[name] = sd["port"]
    work = services["work"]["command"]
    assert ports["work"] == int(work[work.index("--metrics-port") + 1])
    assert f"METRICS_PORT={ports['crawl']}" in services["crawl"]["command"]
    for name in ("ray-head", "ray-worker", "ray-gpu-worker"):
        assert f"--metrics-export-port={ports[name]}" in services[name]["command"], name
    mounts = services["grafana"]["volumes"]
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in mounts
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/videopipe.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def compose_tool() -> tuple[list[str], str] | None:
    """`docker compose` (v2) where it works, else `docker-compose` (v1), else None."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"], "v2"
    if shutil.which("docker-compose"):
        return ["docker-compose"], "v1"
    return None


def test_docker_compose_config_accepts_the_file(tmp_path):
    tool = compose_tool()
    if tool is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed here")
    cmd, version = tool
    path = COMPOSE
    if version == "v1":
        # docker-compose 1.x predates the top-level `name:` of the Compose Specification; the
        # rest of the file is checked by it as written (written next to the original so that
        # the relative build context and mounts resolve the same).
        text = "\n".join(line for line in COMPOSE.read_text().splitlines() if not line.startswith("name:"))
        path = DEPLOY / f".compose-v1-check-{os.getpid()}.yaml"
        path.write_text(text)
    try:
        run = lambda *args: subprocess.run([*cmd, "-f", str(path), *args], capture_output=True,  # noqa: E731
                                           text=True, timeout=120, cwd=DEPLOY)  # fmt: skip
        out = run("--profile", "metrics", "--profile", "gpu", "config")
        assert out.returncode == 0, out.stderr
        resolved = yaml.safe_load(out.stdout)
        listed = run("--profile", "metrics", "--profile", "gpu", "config", "--services")
    finally:
        if path != COMPOSE:
            path.unlink()
    assert set(listed.stdout.split()) == SERVICES | {"kibana-user", "ray-gpu-worker", "prometheus", "grafana"}
    assert resolved["services"]["work"]["build"]["context"] == str(ROOT)
    assert resolved["services"]["crawl"]["environment"]["ELASTICSEARCH_PASSWORD"]  # a default applies


# -- the image ----------------------------------------------------------------------------------------
def test_dockerfile_builds_one_non_root_image_with_a_cpu_or_cuda_torch():
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", text, re.M)
    assert re.search(r"^ARG TORCH_VERSION=2\.13\.0$", text, re.M)
    assert '"torch==${TORCH_VERSION}"' in text and "${TORCH_INDEX_URL}" in text
    assert "pip install -r /tmp/requirements.txt" in text and "COPY requirements.txt" in text
    assert "ffmpeg" in text
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] not in {"root", "0"}
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/app/deploy/docker/entrypoint.sh"]' in text
    assert os.access(DEPLOY / "docker" / "entrypoint.sh", os.X_OK)  # run directly by tini
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "data"} <= set(ignored)


@pytest.mark.parametrize("args, ran", [
    (["crawl", "web", "-s", "METRICS_PORT=9410"], "scrapy crawl web -s METRICS_PORT=9410"),
    (["work", "--metrics-port", "9400"], "python -m processing work --metrics-port 9400"),
    (["export", "--out", "x"], "python -m processing export --out x"),  # a shell builtin's name
    (["es-setup"], "python -m processing es-setup"),
    (["ray", "start", "--head"], "ray start --head"),
    ([], "python -m processing --help"),
])  # fmt: skip
def test_the_entrypoint_runs_crawls_processing_commands_and_programs(tmp_path, args, ran):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for prog in ("scrapy", "python", "ray"):
        stub = bin_dir / prog
        stub.write_text(f'#!/bin/sh\necho {prog} "$@"\n')
        stub.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    out = subprocess.run(["/bin/sh", str(DEPLOY / "docker" / "entrypoint.sh"), *args], env=env,
                         capture_output=True, text=True, timeout=10)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ran


# -- Kubernetes ------------------------------------------------------------------------------------------
def test_k8s_objects_have_the_kinds_and_api_versions_expected():
    kinds = {(d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in k8s_objects()}
    assert kinds == {("ray.io/v1", "RayCluster", "videopipe"), ("ray.io/v1", "RayJob", "videopipe-work"),
                     ("apps/v1", "Deployment", "videopipe-crawl"), ("batch/v1", "Job", "videopipe-es-setup"),
                     ("v1", "ConfigMap", "videopipe-config"), ("v1", "PersistentVolumeClaim", "videopipe-data")}  # fmt: skip


def check_raycluster(cluster: dict) -> None:
    spec = cluster["spec"]
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert all(isinstance(v, str) for v in head["rayStartParams"].values())  # KubeRay wants strings
    head_ports = {p["name"]: p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert {"gcs-server": 6379, "dashboard": 8265, "client": 10001}.items() <= head_ports.items()
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for g in groups.values():
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
        assert "rayStartParams" in g
    gpu_pod = groups["gpu"]["template"]["spec"]
    gpu = gpu_pod["containers"][0]
    assert int(gpu["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert gpu_pod["nodeSelector"] and gpu_pod["tolerations"]
    assert "nvidia.com/gpu" not in str(groups["cpu"]["template"]["spec"])
    for pod in [head["template"]["spec"]] + [g["template"]["spec"] for g in groups.values()]:
        assert pod["securityContext"]["runAsNonRoot"] is True
        secrets = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
                   for e in pod["containers"][0]["env"] if "valueFrom" in e}  # fmt: skip
        assert {"REDIS_URL", "ELASTICSEARCH_PASSWORD"} <= set(secrets)


def test_k8s_raycluster_has_a_cpu_and_a_gpu_group_and_the_job_runs_work_on_it():
    objs = {d["kind"]: d for d in k8s_objects()}
    check_raycluster(objs["RayCluster"])
    job = objs["RayJob"]["spec"]
    assert job["clusterSelector"] == {"ray.io/cluster": objs["RayCluster"]["metadata"]["name"]}
    assert job["entrypoint"].startswith("python -m processing work ")
    assert "--metrics-port" in job["entrypoint"]
    crawl = objs["Deployment"]["spec"]
    assert crawl["replicas"] >= 1
    assert crawl["selector"]["matchLabels"].items() <= crawl["template"]["metadata"]["labels"].items()
    assert crawl["template"]["spec"]["containers"][0]["args"][:2] == ["crawl", "web"]
    assert objs["Job"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["es-setup"]


# -- Helm ------------------------------------------------------------------------------------------------
VALUE_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def value_paths(tree, prefix=()) -> set[tuple[str, ...]]:
    """Every path in values.yaml, inner nodes included."""
    out = set()
    if isinstance(tree, dict):
        for key, sub in tree.items():
            out.add(prefix + (key,))
            out |= value_paths(sub, prefix + (key,))
    return out


def leaf_paths(tree, prefix=()) -> set[tuple[str, ...]]:
    if isinstance(tree, dict) and tree:
        return {p for k, v in tree.items() for p in leaf_paths(v, prefix + (k,))}
    return {prefix}


def template_refs() -> dict[tuple[str, ...], str]:
    refs = {}
    for path in sorted((CHART / "templates").iterdir()):
        for m in VALUE_REF.finditer(path.read_text()):
            refs[tuple(m.group(1).lstrip(".").split("."))] = path.name
    return refs


def test_helm_templates_use_only_values_that_values_yaml_defines():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "videopipe"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    defined = value_paths(values)
    refs = template_refs()
    assert len(refs) > 30
    missing = {".".join(r): f for r, f in refs.items() if r not in defined}
    assert not missing, f"templates use values that values.yaml does not define: {missing}"
    # and nothing in values.yaml is dead: each leaf is used, itself or through a parent (toYaml)
    unused = [".".join(leaf) for leaf in leaf_paths(values)
              if not any(leaf[:len(r)] == r for r in refs)]  # fmt: skip
    assert not unused, f"values.yaml entries no template uses: {unused}"


def test_helm_values_cover_replicas_gpu_pool_endpoints_and_secret_names():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["crawl"]["replicas"] >= 1 and values["ray"]["cpuWorkers"]["replicas"] >= 1
    assert values["gpuNodePool"]["nodeSelector"] and values["gpuNodePool"]["tolerations"]
    assert values["elasticsearch"]["url"] and values["redis"]["secretName"] and values["elasticsearch"]["secretName"]
    text = (CHART / "values.yaml").read_text().lower()
    assert "password:" not in text.replace("passwordkey:", "")  # credentials live in Secrets only
    templates = "".join(p.read_text() for p in (CHART / "templates").iterdir())
    assert templates.count("secretKeyRef") >= 3
    defined = set(re.findall(r'define "([^"]+)"', templates))
    used = set(re.findall(r'include "([^"]+)"', templates))
    assert used <= defined, used - defined


def test_helm_template_renders_where_helm_is_installed(tmp_path):
    if not shutil.which("helm"):
        pytest.skip("helm is not installed on this machine (no package for it here); the chart's "
                    "value references are checked by the test above")  # fmt: skip
    out = subprocess.run(["helm", "template", "vp", str(CHART)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    kinds = {(d["apiVersion"], d["kind"]) for d in docs}
    assert {("ray.io/v1", "RayCluster"), ("ray.io/v1", "RayJob"), ("apps/v1", "Deployment")} <= kinds
    check_raycluster(next(d for d in docs if d["kind"] == "RayCluster"))


def go_render(tmp_path, overrides: dict | None = None) -> list[dict]:
    """The chart rendered by tests/deploy/gotemplate (Go's text/template: Helm's engine)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for dotted, value in (overrides or {}).items():
        *parents, last = dotted.split(".")
        node = values
        for key in parents:
            node = node[key]
        node[last] = value
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    (tmp_path / "values.json").write_text(json.dumps(values))
    (tmp_path / "chart.json").write_text(json.dumps(
        {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]}))
    env = {**os.environ, "GOCACHE": str(tmp_path / "gocache"), "GOFLAGS": "", "GOPATH": str(tmp_path / "gopath")}
    out = subprocess.run(["go", "run", ".", str(CHART), str(tmp_path / "values.json"), str(tmp_path / "chart.json"),
                          "vp"], cwd=Path(__file__).parent / "gotemplate", env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.slow
def test_helm_templates_render_to_valid_objects_with_go_text_template(tmp_path):
    """Where Go is installed (not helm): the templates parse and execute in Helm's template
    engine, and what they render is YAML of the expected objects, for defaults and variants."""
    if not shutil.which("go"):
        pytest.skip("Go is not installed here: the chart is not rendered (apt-get install golang-go)")
    docs = go_render(tmp_path)
    by_kind = {d["kind"]: d for d in docs}
    assert {(d["apiVersion"], d["kind"]) for d in docs} == {
        ("ray.io/v1", "RayCluster"), ("ray.io/v1", "RayJob"), ("apps/v1", "Deployment"), ("batch/v1", "Job"),
        ("v1", "PersistentVolumeClaim")}  # fmt: skip
    check_raycluster(by_kind["RayCluster"])
    job = by_kind["RayJob"]["spec"]
    assert job["clusterSelector"] == {"ray.io/cluster": by_kind["RayCluster"]["metadata"]["name"]}
    assert job["entrypoint"] == "python -m processing work --metrics-port 9400 --num-gpus 1"
    crawl = by_kind["Deployment"]["spec"]
    assert crawl["replicas"] == 4
    assert crawl["selector"]["matchLabels"].items() <= crawl["template"]["metadata"]["labels"].items()
    claim = by_kind["PersistentVolumeClaim"]["metadata"]["name"]
    assert crawl["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim

    variant = {d["kind"]: d for d in go_render(tmp_path, {
        "ray.gpuWorkers.enabled": False, "storage.existingClaim": "shared-videos",
        "elasticsearch.caSecretName": "es-ca", "imagePullSecrets": [{"name": "registry"}],
        "crawl.args": ["-s", "CONCURRENT_REQUESTS=32"], "work.args": ["--batch-size", "16"],
        "crawl.replicas": 9, "work.enabled": False, "esSetup.enabled": False})}  # fmt: skip
    assert set(variant) == {"RayCluster", "Deployment"}  # no claim made, no job, no es-setup
    groups = variant["RayCluster"]["spec"]["workerGroupSpecs"]
    assert [g["groupName"] for g in groups] == ["cpu"]
    pod = variant["Deployment"]["spec"]["template"]["spec"]
    assert variant["Deployment"]["spec"]["replicas"] == 9
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["containers"][0]["args"] == ["crawl", "web", "-s", "METRICS_PORT=9410", "-s", "CONCURRENT_REQUESTS=32"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["ELASTICSEARCH_CA_CERTS"] == "/etc/videopipe/elasticsearch-ca/ca.crt"
    assert {"name": "elasticsearch-ca", "secret": {"secretName": "es-ca"}} in pod["volumes"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "shared-videos"
    jobs = {d["kind"]: d for d in go_render(tmp_path, {"ray.gpuWorkers.enabled": False,
                                                       "work.args": ["--batch-size", "16"]})}  # fmt: skip
    assert jobs["RayJob"]["spec"]["entrypoint"] == (
        "python -m processing work --metrics-port 9400 --num-gpus 0 --batch-size 16")


# -- Grafana -----------------------------------------------------------------------------------------------
def exported_series() -> set[str]:
    """Names of the series the worker metrics and the Scrapy extension export (family + samples)."""
    from scrapy.utils.test import get_crawler

    from crawler.items import VideoItem
    from crawler.metrics import MetricsExtension
    from processing.runtime.metrics import WorkerMetrics

    names = set()
    worker = WorkerMetrics(gpu_probe=lambda: {"0": 0.5})
    worker.record_batch({"frames": 0.1, "embed": 0.2}, {"indexed": 1})
    for fam in worker.registry.collect():
        names |= {fam.name} | {s.name for s in fam.samples}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ext = MetricsExtension.from_crawler(get_crawler(settings_dict={"METRICS_PORT": port}))
    ext.item_scraped(VideoItem(url="https://example.org/a.mp4", source="web", download_via="files",
                               path="/data/videos/a.mp4", size_bytes=10, status="queued"))  # fmt: skip
    try:
        for fam in ext.registry.collect():
            names |= {fam.name} | {s.name for s in fam.samples}
    finally:
        ext.spider_closed(None, "finished")
    return names


def test_the_dashboard_queries_only_series_the_code_exports():
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "videopipe.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 12
    used = {m for e in exprs for m in re.findall(r"\bvideopipe_[a-z_]+", e)}
    exported = exported_series()
    assert not used - exported, f"the dashboard asks for series nobody exports: {used - exported}"
    for wanted in ("videopipe_videos_total", "videopipe_stage_seconds_bucket", "videopipe_stream_backlog",
                   "videopipe_stream_dead_lettered", "videopipe_model_batch_seconds_bucket",
                   "videopipe_gpu_busy_ratio", "videopipe_crawl_media_bytes_total",
                   "videopipe_crawl_items_total"):  # fmt: skip
        assert wanted in used, wanted
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
