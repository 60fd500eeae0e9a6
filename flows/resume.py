"""Resume a crashed story run from its artifacts, a bounded number of times.

A story-to-video run whose process died (a killed worker, a machine that went away) is marked
`Crashed` by the stack's zombie-run automation; a second automation then runs the
`resume-crashed/auto` deployment with the crashed run's id. This flow starts a new run of the
same deployment with the same parameters and job variables (less any FACELESS_FAULT, a test's
injected fault). Finished stages come back `Cached` from the artifact store, so the resume
only computes what the crash interrupted.

Two automations start it, and it resumes each crashed run once: the zombie-run automation
itself (its second action, since after a server restart Prefect holds the Crashed event back
for 15 minutes while it waits for the run's earlier events, which the old server saw), and
one on every Crashed story-to-video run (a flow process that died under a live worker). The
deployment runs one at a time (its concurrency limit), so the second finds the first's resume.

Every resume carries the tags `resume-of:<first run id>` and `resumes:<crashed run id>`; once
`max_resumes` runs carry the first, a further crash is left alone (a story that crashes its
machine every time must not loop).
"""

from __future__ import annotations

import time
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.deployments import run_deployment

from faceless.flows.parameters import flow_parameters

RESUME_TAG = "resume-of:"
RESUMES_TAG = "resumes:"
STORY_FLOW = "story-to-video"


def origin_of(tags: list[str], run_id: str) -> str:
    """The id of the first run of a chain of resumes."""
    for tag in tags:
        if tag.startswith(RESUME_TAG):
            return tag[len(RESUME_TAG):]
    return run_id


@flow(name="resume-crashed")
def resume_crashed(flow_run_id: str, max_resumes: int = 2, wait_s: float = 120) -> str | None:
    """Start the crashed story run `flow_run_id` again from its artifacts; returns the new
    run's id, or None when there is nothing to resume or the chain reached `max_resumes`.
    A run still Running is waited on for up to `wait_s` (the zombie automation marks it
    Crashed in the same breath as it starts this flow)."""
    logger = get_run_logger()
    flow_run_id = flow_run_id.removeprefix("prefect.flow-run.")  # an automation may pass the resource id
    with get_client(sync_client=True) as client:
        crashed = client.read_flow_run(UUID(flow_run_id))
        if client.read_flow(crashed.flow_id).name != STORY_FLOW:
            logger.info("run %s is not a %s run: nothing to resume", flow_run_id, STORY_FLOW)
            return None
        deadline = time.monotonic() + wait_s
        while crashed.state_type is not None and crashed.state_type.value == "RUNNING" and time.monotonic() < deadline:
            time.sleep(2)
            crashed = client.read_flow_run(UUID(flow_run_id))
        if crashed.state_type is None or crashed.state_type.value != "CRASHED" or crashed.deployment_id is None:
            logger.info("run %s is %s, not a crashed deployment run: nothing to resume",
                        flow_run_id, crashed.state_name)
            return None
        origin = origin_of(crashed.tags, flow_run_id)
        already = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[RESUMES_TAG + flow_run_id])))
        if already:
            logger.info("run %s is already resumed as %s", flow_run_id, already[0].id)
            return None
        chain = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[RESUME_TAG + origin])))
        if len(chain) >= max_resumes:
            logger.warning("run %s crashed again; %d resumes of %s already, not resuming (max_resumes=%d)",
                           flow_run_id, len(chain), origin, max_resumes)
            return None
        job_variables = dict(crashed.job_variables or {})
        env = {k: v for k, v in (job_variables.get("env") or {}).items() if k != "FACELESS_FAULT"}
        if env:
            job_variables["env"] = env
        else:
            job_variables.pop("env", None)
        tags = [t for t in crashed.tags if not t.startswith((RESUME_TAG, RESUMES_TAG))] + [
            RESUME_TAG + origin, RESUMES_TAG + flow_run_id]
    resumed = run_deployment(crashed.deployment_id, parameters=flow_parameters(crashed.parameters),
                             job_variables=job_variables, tags=tags, timeout=0, as_subflow=False,
                             flow_run_name=f"{crashed.name}-resume-{len(chain) + 1}")
    logger.info("resuming crashed run %s (%s) as %s, resume %d of at most %d",
                flow_run_id, crashed.name, resumed.id, len(chain) + 1, max_resumes)
    return str(resumed.id)
