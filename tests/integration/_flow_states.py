"""Task-run states of a finished flow run, as the Prefect API reports them."""


def task_states(flow_state, expected: int | None = None) -> dict[str, str]:
    """Final state of each task run of a finished flow run. The API learns of a task run, and of its
    last state, from events that can land just after the flow returns: read until every state is
    final (and, when `expected` is given, until that many task runs are known)."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    fid = flow_state.state_details.flow_run_id
    deadline = time.time() + 60
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fid])))
            known = len(runs) >= (expected or 1)
            if (known and all(r.state and r.state.is_final() for r in runs)) or time.time() > deadline:
                return {r.name: r.state.name for r in runs}
            time.sleep(0.5)
