#!/usr/bin/env bash
# On the GPU machine, after benchmarks/gpu/install.sh --install: the whole flow as a user runs it
# (`python -m flows.full_pipeline --config configs/gpu.yaml`), on the articles carried in
# .gpudata/ (a copy of ../shared/data/cnndm_*.jsonl), artifacts under /tmp/runs/gpu so that a
# later call resumes from them while the machine is warm. Extra arguments are config overrides;
# FLOW_TIMEOUT (e.g. 480) stops the flow in time to pack what it finished; FLOW=flows.iterative_dpo
# with `--rounds 3` among the arguments runs the iterative flow instead.
# Everything small that the run produced (reports, stage metas, training curves, the adapter)
# is packed into $OUT/gpu_run.tgz.
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD SUMPREF_CACHE=/tmp/sumpref-cache PREFECT_HOME=/tmp/prefect-home \
       TQDM_DISABLE=1 PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0
ROOT=${ROOT:-/tmp/runs/gpu}
if [ -f .gpudz/cnndm.tgz ] && [ ! -d .gpudata ]; then mkdir -p .gpudata && tar -xzf .gpudz/cnndm.tgz -C .gpudata; fi
start=$(date +%s)
timeout "${FLOW_TIMEOUT:-1d}" python3 -m "${FLOW:-flows.full_pipeline}" --config configs/gpu.yaml "data.source=$PWD/.gpudata/cnndm_*.jsonl" "root=$ROOT" "$@" \
  2>&1 | tee -a "${OUT:-/tmp}/flow.log" | grep -v -E "Loading weights|it/s\]|FutureWarning|warnings.warn"
rc=${PIPESTATUS[0]}
echo "flow exit $rc after $(( $(date +%s) - start )) s"
if [ -n "${OUT:-}" ]; then
  (cd "$ROOT" && find . \( -name meta.json -o -name 'report.*' -o -name 'metrics.json*' -o -name 'summaries_*.parquet' \
      -o -path '*/dpo/*/adapter/adapter_*' -o -path '*/dpo/*/adapter/README.md' \) -not -path '*/checkpoints/*' \
      -print0 | tar -czf "$OUT/gpu_run.tgz" --null -T -)
  ls -la "$OUT"
fi
exit $rc
