"""Shared fixtures: one real Prefect server per test run, and isolated stores."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


# `make test-fast` runs `pytest -m "not slow"`. Modules that render, start a stack, a cluster,
# S3 or a browser, or run real Whisper carry `pytestmark = pytest.mark.slow`; besides, any
# test that needs a real Prefect server, real Whisper or the tiny models (tiny_home: building
# and running tiny SDXL, SVD, Bark or Whisper took 10-80 s a test; tiny_dir, the module
# fixture that builds a backend's tiny twin: Wan, FLUX, Kokoro) is slow wherever it lives, so
# a new test of that kind in a quick module cannot quietly slow the fast set down.
SLOW_FIXTURES = {"prefect_server", "whisper_base", "tiny_home", "tiny_dir"}


# The longest modules, longest first (`make test`'s slowest list): pytest-xdist hands out
# modules in collection order, so these start at once and the quick ones fill the gaps,
# instead of one long module starting last and running alone at the end.
LONGEST_FIRST = ["test_resilience", "test_gpu_check", "test_cluster", "test_deployments", "test_languages_render",
                 "test_modern", "test_render_offline", "test_stack_faults", "test_render_studio",
                 "test_resilience_store", "test_live_view",
                 "test_store_s3", "test_storyboard_render", "test_bad_input"]


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    # A stable sort: each module's tests keep their order.
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


# Stacks and clusters in the tests wait less for a killed run, through the same settings a user
# has: workers poll every 2 s (not 10) and a run silent for two heartbeats (60 s, not 90) is a
# zombie. (A dead holder's GPU lease stays 60 s: the server refuses shorter leases.)
QUICK_STACK_ENV = {"PREFECT_WORKER_QUERY_SECONDS": "2", "FACELESS_ZOMBIE_HEARTBEATS": "2",
                   # No cron run of the nightly batch in the middle of a test.
                   "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false"}


# The session's server runs CLI renders only: no deployments, schedules, workers or automations.
# Their loop services would each wake every few seconds on every xdist worker's server for the
# whole run. Kept: the task run recorder and event persister (task runs and their states), and
# the repossessor, which frees the GPU slot's lease of a killed render.
QUIET_SERVER_ENV = {f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false" for name in (
    "SCHEDULER", "LATE_RUNS", "FOREMAN", "CANCELLATION_CLEANUP", "TRIGGERS", "PAUSE_EXPIRATIONS", "DB_VACUUM")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(home: Path) -> tuple[subprocess.Popen, str]:
    """`prefect server start` on 127.0.0.1 with its home in `home`; returns before it is up."""
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false", **QUIET_SERVER_ENV}
    env.pop("PREFECT_API_URL", None)
    with open(home / "server.log", "w") as log:
        server = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    return server, f"http://127.0.0.1:{port}/api"


def _wait_until_up(url: str, home: Path, server: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + 180  # 8 s on an idle machine; minutes when every core is busy
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if (server is not None and server.poll() is not None) or time.monotonic() > deadline:
            if server is not None:
                server.kill()
            raise RuntimeError(f"prefect server did not start:\n{(home / 'server.log').read_text()[-3000:]}")
        time.sleep(0.5)


def _stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


# With pytest-xdist (`make test`), the controller starts one server for all its workers: a
# server costs about 11 CPU-s to start and 1 CPU-s a minute idle, so one per worker cost ~80
# CPU-s of a run. Renders on it never queue for each other: it has no `gpu` limit.
def pytest_configure(config):
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        home = Path(tempfile.mkdtemp(prefix="faceless-test-prefect-"))
        server, url = _start_server(home)  # comes up while the workers start and collect
        config._faceless_prefect_server = (server, {"url": url, "home": str(home)})


def pytest_configure_node(node):  # pytest-xdist: what each worker is handed
    started = getattr(node.config, "_faceless_prefect_server", None)
    if started:
        node.workerinput["faceless_prefect_server"] = started[1]


def pytest_unconfigure(config):
    started = getattr(config, "_faceless_prefect_server", None)
    if started:
        _stop(started[0])
        shutil.rmtree(started[1]["home"], ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_server(request, tmp_path_factory):
    """A real `prefect server start` on 127.0.0.1, shared by every test that renders: the
    xdist controller's, or this session's own."""
    shared = getattr(request.config, "workerinput", {}).get("faceless_prefect_server")
    if shared:
        _wait_until_up(shared["url"], Path(shared["home"]))
        yield {"url": shared["url"], "home": Path(shared["home"])}
        return
    home = tmp_path_factory.mktemp("prefect-home")
    server, url = _start_server(home)
    _wait_until_up(url, home, server)
    yield {"url": url, "home": home}
    _stop(server)


def shared_dir(tmp_path_factory, name: str) -> Path:
    """A folder shared by every pytest-xdist worker of this run (their base temporaries are
    siblings), or this session's own without xdist. Whatever builds into it must lock."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / name
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def models_home(tmp_path_factory):
    """Tiny models are built once per test run and shared by every worker: each model folder is
    built under a lock (store.build_folder_once), and building is deterministic."""
    return shared_dir(tmp_path_factory, "faceless-models")


@pytest.fixture(scope="module")
def tiny_home(models_home, tmp_path_factory):
    """A fresh FACELESS_HOME for one test module, sharing the session's built tiny models."""
    home = tmp_path_factory.mktemp("home")
    (home / "models").symlink_to(models_home, target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACELESS_HOME", str(home))
        yield home


def make_env(prefect_server, faceless_home: Path, models_home: Path) -> dict:
    # Each render environment gets its own artifact store; the tiny models are linked in
    # so every store does not rebuild them.
    faceless_home.mkdir(parents=True, exist_ok=True)
    link = faceless_home / "models"
    if not link.exists():
        link.symlink_to(models_home, target_is_directory=True)
    env = {**os.environ, "FACELESS_HOME": str(faceless_home), "PREFECT_API_URL": prefect_server["url"],
           "PREFECT_HOME": str(prefect_server["home"]), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    return env


def render(env: dict, story_file: Path, out: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the CLI as a user would; returns the finished process."""
    result = subprocess.run(
        [str(BIN / "faceless"), "render", str(story_file), "--out", str(out), *extra],
        env=env, capture_output=True, text=True, timeout=900,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"render failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


@pytest.fixture
def store_env(prefect_server, models_home, tmp_path):
    """A fresh artifact store (and output folder) for one test, on the shared server."""
    return make_env(prefect_server, tmp_path / "faceless-home", models_home)


def write_music(path: Path, seconds: float = 3.0) -> None:
    """A short stereo chord, AAC-encoded (a stand-in for a user's music file)."""
    from fractions import Fraction

    import av
    import numpy as np

    rate = 44100
    t = np.arange(int(rate * seconds)) / rate
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220, 277, 330)) * 0.2
    tone = np.stack([chord, np.roll(chord, 200)]).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "stereo"
        for start in range(0, tone.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start:start + 1024]),
                                               format="fltp", layout="stereo")
            frame.rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.fixture(scope="session")
def whisper_base(tmp_path_factory) -> Path:
    """The real Whisper base model folder, joined from its two packages once per session."""
    from whisper_base import assemble

    from faceless.tasks.runtime import store

    return store.build_folder_once(shared_dir(tmp_path_factory, "whisper") / "base", "model.bin", assemble)
