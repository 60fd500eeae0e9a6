"""Deployments on a real local stack: the documented `deployments/stack.py` brings up a Prefect
server, the process work pool, the `gpu` limit, `prefect deploy --all` and a worker; runs go
through `prefect deployment run` and `prefect flow-run retry` as a user would type them, and a
headless Chromium looks at a finished run's page. One stack for the whole module."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import BIN, QUICK_STACK_ENV, ROOT, _free_port
from faceless.tasks.settings import available

pytestmark = pytest.mark.slow  # the local stack (server, worker) rendering deployment runs, and Chromium

STORIES = {
    # Three sentences spoken for 2-6 s each: three shots (the storyboard review edits shot 2).
    "fox": ("A small fox found a golden key under the old oak tree. She carried it all the way across the "
            "frozen river. At last she opened the round green door in the hill."),
    # The others: two short sentences each, one shot, so one keyframe and one clip per story.
    "heron": "The river ran silver and slow under the autumn moon. A heron waited.",
    "baker": "The baker lit the great stone oven long before dawn. The bread rose.",
    "kite": "A red kite climbed over the green hill and the church. The girl laughed.",
    "lamp": "The lighthouse keeper polished the great lamp every evening. Ships came home.",
}
CPU_STAGES = ("plan", "narrate", "align", "storyboard", "compose")


def write_story(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.txt"
    path.write_text(STORIES[name], encoding="utf-8")
    return path


def api(stack: dict, path: str, body: dict | None = None):
    import base64

    auth = (stack.get("env") or {}).get("PREFECT_API_AUTH_STRING")  # a cluster's server wants it
    request = urllib.request.Request(
        f"{stack['url']}{path}", method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json",
                 **({"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {})},
        data=None if body is None else json.dumps(body).encode())
    for attempt in range(6):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            # A loaded machine's SQLite server answers 503 ("database is locked") now and then:
            # nothing was written, so asking again is safe.
            if error.code != 503 or attempt == 5:
                raise
            time.sleep(2)


def prefect(stack: dict, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "prefect"), *args], cwd=ROOT, env=stack["env"], capture_output=True,
                          text=True, timeout=timeout)


def run_id_of(output: str) -> str:
    match = re.search(r"UUID:\s*([0-9a-f-]{36})", output)
    assert match, output[-3000:]
    return match.group(1)


def task_runs(stack: dict, flow_run_id: str) -> list[dict]:
    return api(stack, "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})


def artifacts(stack: dict, flow_run_id: str) -> dict[str, dict]:
    found = api(stack, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
    return {a["key"]: a for a in found if a["key"]}


def interval(run: dict) -> tuple[dt.datetime, dt.datetime]:
    return dt.datetime.fromisoformat(run["start_time"]), dt.datetime.fromisoformat(run["end_time"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory, models_home):
    home = tmp_path_factory.mktemp("stack")
    faceless_home = home / "faceless"
    faceless_home.mkdir()
    (faceless_home / "models").symlink_to(models_home, target_is_directory=True)
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home / "prefect"), "FACELESS_HOME": str(faceless_home),
           **QUICK_STACK_ENV}  # the nightly batch's schedule is checked below, never run
    env.pop("PREFECT_API_URL", None)
    process = subprocess.Popen([str(BIN / "python"), "deployments/stack.py", "--port", str(port), "--logs", str(home)],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    deadline = time.monotonic() + 300
    for line in process.stdout:
        output.append(line)
        if line.startswith("stack: ready") or time.monotonic() > deadline:
            break
    if not output or not output[-1].startswith("stack: ready"):
        process.kill()
        raise RuntimeError("stack did not come up:\n" + "".join(output)[-4000:])
    url = f"http://127.0.0.1:{port}/api"
    yield {"process": process, "output": output, "url": url, "ui": f"http://127.0.0.1:{port}", "home": home,
           "env": {**env, "PREFECT_API_URL": url}, "runs": {}}
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)


def test_stack_brings_up_pool_gpu_limit_and_every_deployment(stack):
    steps = "".join(stack["output"])
    for step in ("server on http://127.0.0.1:", "work pool 'faceless'", "global concurrency limit 'gpu'",
                 "deployments from prefect.yaml", "worker on 'faceless'"):
        assert f"stack: {step}" in steps, steps
    pool = api(stack, "/work_pools/faceless")
    assert pool["type"] == "process"
    limit = api(stack, "/v2/concurrency_limits/gpu")
    assert limit["limit"] == 1 and limit["active"]
    flows = {f["id"]: f["name"] for f in api(stack, "/flows/filter", {})}
    names = {f"{flows[d['flow_id']]}/{d['name']}": d for d in api(stack, "/deployments/filter", {})}
    # One deployment per installed profile: story-batch offers each of them.
    from faceless.tasks.settings import available

    assert {*(f"story-to-video/{profile}" for profile in available()), "story-batch/nightly"} <= set(names)
    for profile in available():
        deployment = names[f"story-to-video/{profile}"]
        assert deployment["parameters"] == {"profile": profile}
        assert deployment["work_pool_name"] == "faceless"
        # Runs change into this clone first.
        assert deployment["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
    nightly = names["story-batch/nightly"]
    assert [s["schedule"]["cron"] for s in nightly["schedules"]] == ["0 2 * * *"]
    assert nightly["parameters"]["stories"] == "deployments/stories"
    workers = api(stack, "/work_pools/faceless/workers/filter", {})
    assert workers and workers[0]["status"] == "ONLINE"


def test_deployment_run_renders_the_story_with_keyed_artifacts(stack, tmp_path):
    story, out = write_story(tmp_path, "fox"), tmp_path / "out"
    result = prefect(stack, "deployment", "run", "story-to-video/offline", "--param", f"story_file={story}",
                     "--param", f"out={out}", "--watch")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert (out / "fox" / "video.mp4").stat().st_size > 0
    run_id = run_id_of(result.stdout)
    keyed = artifacts(stack, run_id)
    assert keyed["fox-summary"]["type"] == "markdown" and keyed["fox-stages"]["type"] == "table"
    summary = keyed["fox-summary"]["data"]
    assert summary.startswith("# fox") and "## Shots" in summary and str(out / "fox" / "video.mp4") in summary
    assert "data:image/jpeg;base64," in summary and "data:image/jpeg;base64," in keyed["fox-summary"]["description"]
    stages = json.loads(keyed["fox-stages"]["data"])
    assert [row["stage"] for row in stages] == ["plan", "narrate", "align", "storyboard", "keyframe[0]", "keyframe[1]",
                                                "keyframe[2]", "animate[0]", "animate[1]", "animate[2]", "compose"]
    assert all(row["state"] == "computed" for row in stages)
    # Progress bars for denoising (both models) and encoding, each driven to the end.
    for key in ("denoise-keyframe-00", "denoise-animate-00", "encode-video"):
        assert keyed[key]["type"] == "progress" and float(keyed[key]["data"]) == 100.0, keyed[key]
    stack["runs"]["finished"] = run_id
    stack["runs"]["fox-out"] = out / "fox"


def test_failed_deployment_run_resumes_with_prefect_flow_run_retry(stack, tmp_path):
    story, out = write_story(tmp_path, "lamp"), tmp_path / "out"
    # Out of memory on every attempt of scene 0's animate, during the run's first attempt only;
    # the job variable stays with the run, as a real memory shortage would until it is freed.
    failed = prefect(stack, "deployment", "run", "story-to-video/offline", "--param", f"story_file={story}",
                     "--param", f"out={out}", "--job-variable", 'env={"FACELESS_FAULT": "animate[0]:oom:99@1"}',
                     "--watch")
    assert failed.returncode != 0 and "Failed" in failed.stdout, failed.stdout[-3000:]
    run_id = run_id_of(failed.stdout)
    assert not (out / "lamp").exists()
    first = task_runs(stack, run_id)
    animate = [t for t in first if t["name"].startswith("animate")]
    assert [t["run_count"] for t in animate] == [5] and animate[0]["state_type"] == "FAILED"

    retried = prefect(stack, "flow-run", "retry", run_id)
    assert retried.returncode == 0, retried.stdout[-3000:] + retried.stderr[-2000:]
    deadline = time.monotonic() + 600
    while True:
        run = api(stack, f"/flow_runs/{run_id}")
        if run["run_count"] >= 2 and run["state_type"] in ("COMPLETED", "FAILED", "CRASHED"):
            break
        assert time.monotonic() < deadline, run["state_name"]
        time.sleep(2)
    assert run["state_type"] == "COMPLETED", run["state"]
    manifest = json.loads((out / "lamp" / "manifest.json").read_text())
    assert manifest["flow_run_id"] == run_id
    assert {(s["stage"], s["scene"]) for s in manifest["stages"] if not s["cached"]} == {("animate", 0), ("compose", None)}
    # The server agrees: the retry's plan, narrate, align and keyframe task runs came back Cached.
    second = [t for t in task_runs(stack, run_id) if t["id"] not in {f["id"] for f in first}]
    states = {t["name"].rsplit("-", 1)[0]: t["state_name"] for t in second if not t["name"].startswith("gpu")}
    assert states == {"plan": "Cached", "narrate": "Cached", "align": "Cached", "storyboard": "Cached", "keyframe": "Cached",
                      "animate": "Completed", "compose": "Completed"}, states


def test_batch_shares_the_gpu_and_overlaps_cpu_stages(stack, tmp_path):
    folder, out = tmp_path / "stories", tmp_path / "out"
    for name in ("heron", "baker", "kite"):
        write_story(folder, name)
    result = prefect(stack, "deployment", "run", "story-batch/nightly", "--param", f"stories={folder}",
                     "--param", f"out={out}", "--watch")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    batch_id = run_id_of(result.stdout)
    for name in ("heron", "baker", "kite"):
        assert (out / name / "video.mp4").stat().st_size > 0

    children = api(stack, "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [batch_id]}}})
    assert sorted(c["name"] for c in children) == ["baker", "heron", "kite"]
    assert all(c["state_type"] == "COMPLETED" and c["deployment_id"] for c in children)
    assert len({c["id"] for c in children}) == 3

    # The batch's page ends with its table: a row per story, state, duration and link.
    table = artifacts(stack, batch_id)["story-batch"]["data"]
    for child in children:
        assert re.search(rf"\| {child['name']}\.txt \| Completed \| [0-9.]+ s \| \[{child['name']}\]"
                         rf"\({re.escape(stack['ui'])}/runs/flow-run/{child['id']}\) \|", table), table

    runs = {c["name"]: task_runs(stack, c["id"]) for c in children}
    # GPU work (the `gpu <stage>` task runs, held inside the `gpu` slot) never overlaps.
    gpu = sorted((interval(t) for story in runs.values() for t in story if t["name"].startswith("gpu ")))
    assert len(gpu) == 6, [t["name"] for story in runs.values() for t in story]
    for (_, end), (start, _) in zip(gpu, gpu[1:]):
        assert start >= end, gpu
    # CPU stages of different stories do run at the same time.
    cpu = [(story, t["name"], *interval(t)) for story, story_runs in runs.items() for t in story_runs
           if t["name"].rsplit("-", 1)[0] in CPU_STAGES and t["state_name"] == "Completed"]
    overlapping = [(a[:2], b[:2]) for a in cpu for b in cpu
                   if a[0] < b[0] and a[2] < b[3] and b[2] < a[3]]
    assert overlapping, cpu


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "chromium is not installed: `make test` installs it (apt-get install chromium)"
    return path


def test_run_page_shows_the_summary_and_a_keyframe_in_chromium(stack, tmp_path):
    from playwright.sync_api import sync_playwright

    run_id = stack["runs"].get("finished")
    assert run_id, "needs the finished run of test_deployment_run_renders_the_story_with_keyed_artifacts"
    shots = Path(os.environ.get("FACELESS_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        # Playwright gives the browser a fresh profile of its own; the flags keep it off the network.
        browser = playwright.chromium.launch(executable_path=chromium(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.goto(f"{stack['ui']}/runs/flow-run/{run_id}", wait_until="networkidle", timeout=180_000)
            page.get_by_text("Artifacts", exact=True).first.click()
            # The list view renders each artifact's description (markdown) under its key.
            page.locator(".p-button-group__button").nth(1).click()
            # The summary's entry: the nearest block around its key that holds pictures.
            card = page.get_by_text("fox-summary", exact=True).locator("xpath=ancestor::*[.//img][1]")
            card.first.wait_for(timeout=90_000)
            text = card.first.inner_text()
            assert "fox" in text and "stages cached" in text and "video.mp4" in text, text
            images = card.first.locator("img[src^='data:image/jpeg;base64,']")
            images.first.wait_for(state="visible", timeout=90_000)
            assert images.first.evaluate("img => img.complete && img.naturalWidth") > 0
            page.screenshot(path=str(shots / "run-page.png"), full_page=True)

            # One click further: the whole summary, keyframes and shot table.
            page.get_by_text("fox-summary", exact=True).first.click()
            page.get_by_role("heading", name="Shots").wait_for(timeout=90_000)
            assert page.get_by_text("stages cached").first.is_visible()
            keyframe = page.locator("img[alt='shot 0 keyframe']")
            keyframe.wait_for(state="visible", timeout=90_000)
            assert keyframe.evaluate("img => img.complete && img.naturalWidth") == 180
            page.screenshot(path=str(shots / "summary-artifact.png"), full_page=True)
        finally:
            browser.close()
    print(f"screenshots: {shots / 'run-page.png'} {shots / 'summary-artifact.png'}")


# The run form (Run > Custom run) in the UI a browser lands on (Prefect 3.9 serves V2 at /, V1 beside it).
FORM_STORY = "A paper boat sailed down the gutter after the rain.\nThe cat watched it go."


def _form_parameters(stack: dict, deployment: dict) -> dict:
    """Each parameter's description as the form prints it (single line breaks become spaces)."""
    properties = deployment["parameter_openapi_schema"]["properties"]
    assert all(p.get("description") for p in properties.values()), properties
    return {name: re.sub(r"\s+", " ", p["description"]).strip() for name, p in properties.items()}


def _typed_runs(stack: dict, deployment: dict) -> list[dict]:
    """The deployment's runs started with a typed story (the form's)."""
    runs = api(stack, "/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}})
    return [r for r in runs if r["parameters"].get("story")]


def _page_text(page) -> str:
    return re.sub(r"\s+", " ", page.inner_text("body"))


def _after_submit(stack: dict, deployment: dict, page) -> str:
    """What to look at when Submit made no run: where the page is, the end of its text (the
    form's errors and any toast are there), the deployment's runs and the server's errors."""
    runs = api(stack, "/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}})
    log = stack["home"] / "server.log"
    errors = [line for line in (log.read_text(errors="replace").splitlines() if log.exists() else [])
              if re.search(r'error|HTTP/1\.1" [45]\d\d', line, re.IGNORECASE)]
    text = _page_text(page)
    return (f"page {page.url}; its end: ...{text[-1500:]}\nruns: {[(r['name'], r['parameters']) for r in runs]}\n"
            f"server log lines with errors: {errors[-20:]}")


def _open_custom_run(page, stack: dict, deployment: dict) -> None:
    """From the deployment's page, as a user: Run, then Custom run."""
    page.goto(f"{stack['ui']}/v2/deployments/deployment/{deployment['id']}", wait_until="networkidle", timeout=180_000)
    page.get_by_role("button", name="Run").first.click()
    page.get_by_text("Custom run", exact=True).click()
    # The parameters draw after the page: wait for the last one's label.
    last = list(deployment["parameter_openapi_schema"]["properties"])[-1]
    page.get_by_text(f"{last} (Optional)", exact=True).wait_for(timeout=90_000)


def test_custom_run_form_takes_a_typed_story_and_renders_it_in_chromium(stack, tmp_path):
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    deployment = api(stack, "/deployments/name/story-to-video/offline")
    descriptions = _form_parameters(stack, deployment)
    assert list(descriptions) == ["story", "story_file", "profile", "profile_file", "out", "size", "music", "voice",
                                  "redo_degraded", "review", "review_edits"]
    profiles = deployment["parameter_openapi_schema"]["properties"]["profile"]
    assert profiles["type"] == "string" and profiles["enum"] == available() and "offline" in available()
    out = tmp_path / "out"
    shots = Path(os.environ.get("FACELESS_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            page.goto(f"{stack['ui']}/v2/deployments/deployment/{deployment['id']}", wait_until="networkidle",
                      timeout=180_000)
            # The deployment's own description (prefect.yaml), in its page's Description tab.
            assert deployment["description"].startswith("Render one story on a CPU with no network")
            page.get_by_role("tab", name="Description").click()
            page.get_by_text("Render one story on a CPU with no network").first.wait_for(timeout=90_000)
            _open_custom_run(page, stack, deployment)
            text = _page_text(page)
            # No str/None toggles anywhere: every text parameter is a box ready to type in.
            assert 'Property is type "None"' not in text, text
            for name, description in descriptions.items():
                assert description in text, (name, description, text)
            # The profile is a drop-down of the installed profiles, set to the deployment's.
            profile = page.get_by_role("button", name="Select profile")
            assert profile.inner_text() == "offline"
            profile.click()
            options = page.get_by_role("option")
            options.first.wait_for(timeout=10_000)
            assert sorted(options.all_inner_texts()) == available()
            page.keyboard.press("Escape")
            story = page.get_by_label("story (Optional)", exact=True)
            assert story.evaluate("e => e.tagName") == "TEXTAREA" and story.is_editable()
            story.click()
            story.press_sequentially(FORM_STORY)  # the line break is typed as Enter
            assert story.input_value() == FORM_STORY
            page.get_by_label("out (Optional)", exact=True).fill(str(out))
            page.screenshot(path=str(shots / "custom-run-form.png"), full_page=True)
            page.get_by_role("button", name="Submit").click()
            # Submitted: the run exists on the server (what the UI does next, going back to the
            # deployment's page, can take minutes on a loaded machine and proves nothing more).
            deadline = time.monotonic() + 180
            while not (runs := _typed_runs(stack, deployment)) and time.monotonic() < deadline:
                time.sleep(2)
            if not runs:
                page.screenshot(path=str(shots / "custom-run-submitted.png"), full_page=True)
                raise AssertionError(f"no run 180 s after Submit; {_after_submit(stack, deployment, page)}")
        finally:
            browser.close()
    assert len(runs) == 1, runs
    run, run_id = runs[0], runs[0]["id"]
    # What the form sent: the typed story and the deployment's profile; untouched boxes are not sent.
    assert run["parameters"]["story"] == FORM_STORY and run["parameters"]["profile"] == "offline", run["parameters"]
    assert not run["parameters"].get("story_file"), run["parameters"]
    deadline = time.monotonic() + 900
    while run["state_type"] not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
        assert time.monotonic() < deadline, run["state_name"]
        time.sleep(2)
        run = api(stack, f"/flow_runs/{run_id}")
    assert run["state_type"] == "COMPLETED", run["state"]
    video = out / "a-paper-boat-sailed-down-the" / "video.mp4"
    assert video.stat().st_size > 0, sorted(out.rglob("*"))
    manifest = json.loads((video.parent / "manifest.json").read_text())
    assert manifest["flow_run_id"] == run_id and manifest["profile"] == "offline"
    print(f"custom run form to rendered video: {time.monotonic() - started:.1f} s")


def test_custom_run_forms_of_story_batch_and_v1_ui(stack):
    """The nightly batch's form has the same fixes, and the V1 UI (a click away) draws the
    story-to-video form the same way: text boxes without toggles, a description under each."""
    from playwright.sync_api import sync_playwright

    deployments = {name: api(stack, f"/deployments/name/{name}")
                   for name in ("story-batch/nightly", "story-to-video/offline")}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            batch = deployments["story-batch/nightly"]
            _open_custom_run(page, stack, batch)
            text = _page_text(page)
            assert 'Property is type "None"' not in text, text
            for name, description in _form_parameters(stack, batch).items():
                assert description in text, (name, description, text)
            assert page.get_by_role("button", name="Select profile").inner_text() == "offline"

            offline = deployments["story-to-video/offline"]
            page.goto(f"{stack['ui']}/deployments/deployment/{offline['id']}/run", wait_until="networkidle",
                      timeout=180_000)
            page.get_by_text("music (Optional)", exact=True).wait_for(timeout=90_000)
            text = _page_text(page)
            assert "Switch to V2 UI" in text and 'Property is type "None"' not in text, text
            for name, description in _form_parameters(stack, offline).items():
                assert description in text, (name, description, text)
        finally:
            browser.close()


def _runs_here(flow_run_id: str) -> list[int]:
    """Processes on this machine that run this flow run (a process worker gives its flow process
    PREFECT__FLOW_RUN_ID)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def _wait_for_state(stack: dict, run_id: str, types: tuple[str, ...], seen: set | None = None,
                    timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = api(stack, f"/flow_runs/{run_id}")
        if run["state_type"] in types or run["state_type"] in ("FAILED", "CRASHED", "CANCELLED"):
            return run
        if seen is not None and _runs_here(run_id):
            seen.add(True)
        assert time.monotonic() < deadline, run["state_name"]
        time.sleep(1)


def test_storyboard_review_suspends_then_resumes_from_the_ui_form_in_chromium(stack, tmp_path):
    """A `review: true` run of the story rendered above: everything up to the keyframes comes
    back Cached, the run suspends with no process left running it, its page shows the storyboard
    with the keyframes, and the Resume form changes shot 2's prompt. Shot 2 gets a new keyframe
    and clip; every other shot's are Cached; the manifest marks shot 2 edited."""
    from playwright.sync_api import sync_playwright

    before = stack["runs"].get("fox-out")
    assert before, "needs the finished run of test_deployment_run_renders_the_story_with_keyed_artifacts"
    started = time.monotonic()
    story, out = write_story(tmp_path, "fox"), tmp_path / "out"
    result = prefect(stack, "deployment", "run", "story-to-video/offline", "--param", f"story_file={story}",
                     "--param", f"out={out}", "--param", "review=true")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    run_id = run_id_of(result.stdout)
    running = set()
    run = _wait_for_state(stack, run_id, ("PAUSED",), seen=running)
    assert run["state_name"] == "Suspended", run["state"]
    suspended_after = time.monotonic() - started
    # Nobody holds it: the flow process ends (it was there while the run ran), and the run stays
    # Suspended with nothing running it.
    deadline = time.monotonic() + 60
    while _runs_here(run_id) and time.monotonic() < deadline:
        time.sleep(1)
    assert running and not _runs_here(run_id)
    time.sleep(3)
    assert api(stack, f"/flow_runs/{run_id}")["state_name"] == "Suspended" and not _runs_here(run_id)
    assert api(stack, "/v2/concurrency_limits/gpu")["active_slots"] == 0
    board = artifacts(stack, run_id)["fox-storyboard"]
    assert board["type"] == "markdown" and board["data"].count("data:image/jpeg;base64,") == 3
    first = {t["id"] for t in task_runs(stack, run_id)}

    shots = Path(os.environ.get("FACELESS_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    new_prompt = "a fox at a round green door in a grassy hill, golden key, morning light"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        try:
            page.goto(f"{stack['ui']}/runs/flow-run/{run_id}", wait_until="networkidle", timeout=180_000)
            page.get_by_text("Artifacts", exact=True).first.click()
            page.get_by_text("fox-storyboard", exact=True).first.click()
            for index in range(3):
                picture = page.locator(f"img[alt='shot {index} keyframe']")
                picture.wait_for(state="visible", timeout=90_000)
                assert picture.evaluate("img => img.complete && img.naturalWidth") == 180
            assert page.get_by_text("Storyboard review: fox").first.is_visible()
            page.screenshot(path=str(shots / "storyboard-review.png"), full_page=True)

            suspension = api(stack, f"/flow_runs/{run_id}")["state"]["id"]
            for attempt in range(3):
                page.goto(f"{stack['ui']}/runs/flow-run/{run_id}", wait_until="networkidle", timeout=180_000)
                page.get_by_role("button", name="Resume").first.click()
                # The form the UI draws from the run's input model: each shot's prompt in a text box.
                label = page.get_by_role("dialog").get_by_text("Shot 2 prompt (Optional)", exact=True)
                label.wait_for(timeout=90_000)
                prompt = label.locator("xpath=ancestor::*[.//textarea][1]").locator("textarea").first
                assert prompt.input_value() == json.loads((before / "manifest.json").read_text())["scenes"][2]["prompt"]
                prompt.fill(new_prompt)
                page.screenshot(path=str(shots / "storyboard-resume-form.png"), full_page=True)
                page.get_by_role("dialog").get_by_role("button", name="Submit").click()
                # On a loaded machine the form's request can fail (the stack's SQLite answers 503,
                # "database is locked", and the UI does not ask again): a person would submit again.
                deadline = time.monotonic() + 120
                while api(stack, f"/flow_runs/{run_id}")["state"]["id"] == suspension and time.monotonic() < deadline:
                    time.sleep(2)
                if api(stack, f"/flow_runs/{run_id}")["state"]["id"] != suspension:
                    break
                page.screenshot(path=str(shots / f"storyboard-resume-not-taken-{attempt}.png"), full_page=True)
            else:
                raise AssertionError("three submits of the Resume form left the run in its first suspension")
            # Changed: the run makes shot 2's keyframe and suspends for a second look.
            run = _wait_for_state(stack, run_id, ("PAUSED",), timeout=600)
            deadline = time.monotonic() + 600
            while run["state_type"] == "PAUSED" and run["state"]["state_details"].get("pause_key") != "review-1":
                assert time.monotonic() < deadline, run["state"]
                time.sleep(1)
                run = api(stack, f"/flow_runs/{run_id}")
            assert run["state_name"] == "Suspended", run["state"]
        except Exception:
            page.screenshot(path=str(shots / "storyboard-review-failed.png"), full_page=True)
            raise
        finally:
            browser.close()
    # The second look is approved as it stands (Resume with the form untouched, here through the API).
    api(stack, f"/flow_runs/{run_id}/resume", {"run_input": {}})
    run = _wait_for_state(stack, run_id, ("COMPLETED",))
    assert run["state_type"] == "COMPLETED", run["state"]

    manifest = json.loads((out / "fox" / "manifest.json").read_text())
    assert [s["edited"] for s in manifest["scenes"]] == [False, False, True]
    assert manifest["scenes"][2]["prompt"] == new_prompt
    # Shot 2's keyframe and clip are new; every other shot's came back Cached on each start.
    after = [t for t in task_runs(stack, run_id) if t["id"] not in first and not t["name"].startswith("gpu")]
    states: dict[str, set] = {}
    for t in after:
        states.setdefault(t["name"].rsplit("-", 1)[0], set()).add(t["state_name"])
    assert states.pop("compose") == {"Completed"}
    computed = {(r["stage"], r["scene"]) for r in manifest["stages"] if not r["cached"]}
    assert computed == {("animate", 2), ("compose", None)}, computed  # keyframe 2: made before the second look
    # Task run names carry no shot index: one keyframe and one clip made, all the others Cached.
    made = [t for t in after if t["name"].rsplit("-", 1)[0] in ("keyframe", "animate")]
    assert sorted(t["state_name"] for t in made).count("Completed") == 2, [(t["name"], t["state_name"]) for t in after]
    assert {t["state_name"] for t in made} == {"Completed", "Cached"}
    assert all(states[name] == {"Cached"} for name in ("plan", "narrate", "align", "storyboard")), states
    for index in (0, 1):
        assert (out / "fox" / "keyframes" / f"scene-{index:02d}.png").read_bytes() == \
            (before / "keyframes" / f"scene-{index:02d}.png").read_bytes()
    assert (out / "fox" / "keyframes" / "scene-02.png").read_bytes() != (before / "keyframes" / "scene-02.png").read_bytes()
    print(f"review run: suspended after {suspended_after:.1f} s, done after {time.monotonic() - started:.1f} s")


def test_stack_stops_again(stack):
    process = stack["process"]
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    rest, _ = process.communicate(timeout=120)
    assert process.returncode == 0, rest
    assert "stack: stopped" in rest
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{stack['url']}/health", timeout=5)
