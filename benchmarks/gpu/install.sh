#!/usr/bin/env bash
# On the GPU machine: gather the carried part(s) of `.whl/` (made by benchmarks/gpu/bundle.py) under
# /tmp/gpu-bundle; once every part is there (or with --install), join chunked files and install
# everything into /tmp/site. Parts carried by earlier calls stay while the machine is warm.
set -euo pipefail
mkdir -p /tmp/gpu-bundle
for d in .whl/part-*; do [ -d "$d" ] && cp -n "$d"/* /tmp/gpu-bundle/; done
if [ "${1:-}" = "--install" ]; then
  repo=$PWD
  cd /tmp/gpu-bundle
  for first in *.chunk00; do
    [ -e "$first" ] || continue
    base="${first%.chunk00}"; cat "$base".chunk* > "$base" && rm -f "$base".chunk*
  done
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site ./*.whl
  echo "installed $(ls ./*.whl | wc -l) wheels into /tmp/site"
  # As `make setup` does: convert the embedded model once, into the cache run_flow.sh uses.
  (cd "$repo" && PYTHONPATH=/tmp/site:$repo SUMPREF_CACHE=/tmp/sumpref-cache TQDM_DISABLE=1 python3 -m sumpref.model_paths)
fi
ls /tmp/gpu-bundle | wc -l
