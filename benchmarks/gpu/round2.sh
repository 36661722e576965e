#!/usr/bin/env bash
# On the GPU machine, after benchmarks/gpu/install.sh --install: round 2 of the GPU run, sampled from
# the committed round-1 policy (benchmarks/adapters/gpu-round1), as the flow's own round 2 does it
# after its merge stage: base + round-1 adapter merged into a plain model folder, which is then the
# policy and the reference of `python -m flows.full_pipeline --config configs/gpu.yaml`.
#   bash benchmarks/gpu/round2.sh flow [overrides ...]   # resumable: rerun after a time limit
#   bash benchmarks/gpu/round2.sh eval [overrides ...]   # base, round 1, round 2 on the held-out articles
set -euo pipefail
export PYTHONPATH=/tmp/site:$PWD SUMPREF_CACHE=/tmp/sumpref-cache PREFECT_HOME=/tmp/prefect-home \
       TQDM_DISABLE=1 PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0
ROUND1=benchmarks/adapters/gpu-round1
MERGED=${MERGED:-/tmp/round1-merged}
export ROOT=${ROOT:-/tmp/runs/gpu-r2}
what=${1:?flow or eval}; shift
if [ ! -f "$MERGED/config.json" ]; then
  python3 - "$ROUND1" "$MERGED" <<'EOF'
import sys
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from sumpref.model_paths import resolve_model
base = resolve_model("embedded:smollm2-135m-instruct")
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), sys.argv[1])
model.merge_and_unload().save_pretrained(sys.argv[2])
AutoTokenizer.from_pretrained(base).save_pretrained(sys.argv[2])
print("merged", sys.argv[1], "->", sys.argv[2])
EOF
fi
case "$what" in
  flow) exec bash benchmarks/gpu/run_flow.sh "policy.model=$MERGED" "$@" ;;
  eval)
    articles=$(ls -d "$ROOT"/articles/*/ | head -1)
    adapter=$(ls -d "$ROOT"/dpo/*/adapter | head -1)
    start=$(date +%s)
    for baseline in base round1; do
      python3 -m flows.evaluate --config configs/eval_gpu.yaml "data.source=${articles}articles.parquet" \
        root=/tmp/runs/gpu-r2-eval "models.2.backend.model=$MERGED" "models.2.backend.adapter=$adapter" \
        "baseline=$baseline" "$@" 2>&1 | grep -v -E "Loading weights|it/s\]|FutureWarning|warnings.warn"
      echo "evaluation (baseline $baseline) done after $(( $(date +%s) - start )) s"
    done
    if [ -n "${OUT:-}" ]; then
      (cd /tmp/runs && find gpu-r2-eval \( -name 'report.*' -o -name 'meta.json' -o -name '*.parquet' \) -print0 \
        | tar -czf "$OUT/gpu_r2_eval.tgz" --null -T -)
    fi ;;
  *) echo "usage: $0 flow|eval [overrides ...]" >&2; exit 2 ;;
esac
