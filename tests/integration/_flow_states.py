"""Task-run states of a finished flow run, as the Prefect API reports them, its subflows' included."""

from __future__ import annotations


def task_runs(client, flow_run_id) -> list[tuple[str, object]]:
    """`(name, task run)` for every task run of a flow run and, recursively, of its subflow runs (a
    pipeline's `round-N`). A subflow's task runs are named `{subflow run name}/{task run name}`:
    each flow run numbers its task runs from 0, so two rounds both have a `sample-summaries-0`. The
    task run by which a parent only tracks a subflow is left out (its state is the subflow's: never
    `Cached`)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId

    children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
    tracking = {c.parent_task_run_id for c in children}
    own = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    out = [(r.name, r) for r in own if r.id not in tracking]
    for child in children:
        out += [(f"{child.name}/{name}", r) for name, r in task_runs(client, child.id)]
    return out


def task_states(flow_state, expected: int | None = None) -> dict[str, str]:
    """Final state of each task run of a finished flow run (and of its subflows, see `task_runs`).
    The API learns of a task run, and of its last state, from events that can land just after the
    flow returns: read until every state is final (and, when `expected` is given, until that many
    task runs are known)."""
    import time

    from prefect.client.orchestration import get_client

    fid = flow_state.state_details.flow_run_id
    deadline = time.time() + 60
    with get_client(sync_client=True) as client:
        while True:
            runs = task_runs(client, fid)
            known = len(runs) >= (expected or 1)
            if (known and all(r.state and r.state.is_final() for _, r in runs)) or time.time() > deadline:
                return {name: r.state.name for name, r in runs}
            time.sleep(0.5)
