"""End-to-end fixtures: a real node_exporter, a real Prometheus and Strata, on loopback.

One stack is started for the whole session (startup dominates the run time):

- ``prometheus-node-exporter`` on 127.0.0.1:P1;
- ``target/debug/strata serve`` with a temporary data directory, scraping node_exporter
  itself (job ``strata_node``, every 2 s);
- ``prometheus`` scraping node_exporter (job ``node``, every 2 s) and remote-writing
  everything to Strata's ``/api/v1/write``.

Every process logs to a file in the session's temporary directory; the logs' tails are
attached to the report of a failing test (and to the error when startup fails). All
processes are stopped at teardown.

Environment: ``STRATA_BIN`` overrides the Strata binary (default
``<repo>/target/debug/strata``); ``PROMETHEUS_BIN`` and ``NODE_EXPORTER_BIN`` override
the Debian binaries.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
SCRAPE_INTERVAL_S = 2
STARTUP_TIMEOUT_S = 30
LOG_TAIL_LINES = 80


def _binary(env: str, name: str, fallback: Path) -> Path:
    if os.environ.get(env):
        return Path(os.environ[env])
    found = shutil.which(name)
    return Path(found) if found else fallback


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def distinct_free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(text[-lines:]) or "(empty)"


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path


@dataclass
class Stack:
    tmp: Path
    data_dir: Path
    node_exporter_port: int
    strata_http_port: int
    strata_flight_port: int
    prometheus_port: int
    strata_otlp_grpc_port: int = 0
    strata_statsd_port: int = 0
    procs: list[Proc] = field(default_factory=list)

    @property
    def node_exporter_addr(self) -> str:
        return f"127.0.0.1:{self.node_exporter_port}"

    @property
    def strata_url(self) -> str:
        return f"http://127.0.0.1:{self.strata_http_port}"

    @property
    def flight_uri(self) -> str:
        return f"grpc://127.0.0.1:{self.strata_flight_port}"

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.strata_otlp_grpc_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    def promql(self, query: str) -> list[dict]:
        """The ``result`` of the instant query ``query`` now, through Strata's
        ``/api/v1/query``, asserting that it succeeded."""
        r = requests.get(
            f"{self.strata_url}/api/v1/query",
            params={"query": query, "time": time.time()},
            timeout=30,
        )
        r.raise_for_status()
        body = r.json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def logs(self) -> str:
        return "\n".join(
            f"----- {p.name} (exit code {p.popen.poll()}) log tail: {p.log} -----\n{log_tail(p.log)}"
            for p in self.procs
        )

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.tmp / f"{name}.log"
        fh = open(log, "wb")
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,
                env=env,
                start_new_session=True,
            )
        finally:
            fh.close()
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def check_alive(self) -> None:
        for p in self.procs:
            if p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited with code {p.popen.returncode}\n{self.logs()}")

    def wait_ready(self, name: str, url: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        last = "no answer"
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                r = requests.get(url, timeout=2)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.2)
        raise RuntimeError(f"{name} not ready at {url} after {STARTUP_TIMEOUT_S}s ({last})\n{self.logs()}")

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.popen.poll() is None:
                p.popen.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait(timeout=10)


def _strata_config(stack: Stack) -> str:
    return (
        "[statsd]\n"
        'flush_interval = "200ms"\n'
        "[[scrape_configs]]\n"
        'job_name = "strata_node"\n'
        f'scrape_interval = "{SCRAPE_INTERVAL_S}s"\n'
        'scrape_timeout = "1s"\n'
        'metrics_path = "/metrics"\n'
        "[[scrape_configs.static_configs]]\n"
        f'targets = ["{stack.node_exporter_addr}"]\n'
    )


def _prometheus_config(stack: Stack) -> str:
    # JSON is YAML: no YAML library needed.
    config = {
        "global": {
            "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
            "scrape_timeout": "1s",
            "evaluation_interval": f"{SCRAPE_INTERVAL_S}s",
        },
        "scrape_configs": [
            {
                "job_name": "node",
                "static_configs": [{"targets": [stack.node_exporter_addr]}],
            }
        ],
        "remote_write": [
            {
                "url": f"{stack.strata_url}/api/v1/write",
                "queue_config": {"batch_send_deadline": "1s"},
                # Metadata every 2 s instead of every minute, for the metadata test.
                "metadata_config": {"send_interval": "2s"},
            }
        ],
    }
    return json.dumps(config, indent=2)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory):
    strata_bin = Path(os.environ.get("STRATA_BIN", REPO / "target" / "debug" / "strata"))
    prometheus_bin = _binary("PROMETHEUS_BIN", "prometheus", Path("/usr/bin/prometheus"))
    node_exporter_bin = _binary(
        "NODE_EXPORTER_BIN", "prometheus-node-exporter", Path("/usr/bin/prometheus-node-exporter")
    )
    for b, hint in [
        (strata_bin, "run `cargo build` first"),
        (prometheus_bin, "apt-get install prometheus (scripts/test-all --deps)"),
        (node_exporter_bin, "apt-get install prometheus-node-exporter (scripts/test-all --deps)"),
    ]:
        if not b.is_file():
            pytest.fail(f"{b} is missing: {hint}", pytrace=False)

    tmp = tmp_path_factory.mktemp("e2e")
    ports = distinct_free_ports(6)
    stack = Stack(
        tmp=tmp,
        data_dir=tmp / "strata-data",
        node_exporter_port=ports[0],
        strata_http_port=ports[1],
        strata_flight_port=ports[2],
        prometheus_port=ports[3],
        strata_otlp_grpc_port=ports[4],
        strata_statsd_port=ports[5],
    )
    textfile_dir = tmp / "textfile"
    textfile_dir.mkdir()
    strata_toml = tmp / "strata.toml"
    strata_toml.write_text(_strata_config(stack))
    prom_yml = tmp / "prometheus.yml"
    prom_yml.write_text(_prometheus_config(stack))

    try:
        stack.start(
            "node_exporter",
            [
                str(node_exporter_bin),
                f"--web.listen-address={stack.node_exporter_addr}",
                f"--collector.textfile.directory={textfile_dir}",
                # Needs systemd's D-Bus socket, which containers lack: it only logs errors.
                "--no-collector.systemd",
            ],
        )
        stack.wait_ready("node_exporter", f"http://{stack.node_exporter_addr}/metrics")

        env = dict(os.environ)
        # Strata's own default, less the Delta kernel's per-scan INFO lines.
        env.setdefault("RUST_LOG", "info,deltalake=warn,datafusion=warn,buoyant_kernel=warn")
        env.setdefault("NO_COLOR", "1")  # plain log files
        stack.start(
            "strata",
            [
                str(strata_bin),
                "serve",
                "--config",
                str(strata_toml),
                "--data-dir",
                str(stack.data_dir),
                "--http-addr",
                f"127.0.0.1:{stack.strata_http_port}",
                "--flight-addr",
                f"127.0.0.1:{stack.strata_flight_port}",
                "--otlp-grpc-addr",
                f"127.0.0.1:{stack.strata_otlp_grpc_port}",
                "--statsd-addr",
                f"127.0.0.1:{stack.strata_statsd_port}",
            ],
            env=env,
        )
        stack.wait_ready("strata", f"{stack.strata_url}/-/ready")

        stack.start(
            "prometheus",
            [
                str(prometheus_bin),
                f"--config.file={prom_yml}",
                f"--storage.tsdb.path={tmp / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{stack.prometheus_port}",
                "--log.level=info",
            ],
        )
        stack.wait_ready("prometheus", f"{stack.prometheus_url}/-/ready")
    except BaseException:
        stack.stop()
        raise

    yield stack
    stack.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attaches the processes' log tails to the report of a failing test (for every
    fixture of the test that is a Stack: ``stack`` here, ``s3_stack`` in test_s3.py)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        funcargs = item.funcargs if hasattr(item, "funcargs") else {}
        for st in funcargs.values():
            if isinstance(st, Stack):
                for p in st.procs:
                    report.sections.append(
                        (f"{p.name} log (exit code {p.popen.poll()}): {p.log}", log_tail(p.log))
                    )
