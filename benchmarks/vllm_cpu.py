"""Summary sampling on CPU: our transformers backend vs vLLM in a Ray actor vs vLLM's server.

Same workload for the three, in one run: the embedded SmolLM2-135M, the published summary prompt
on the first `--articles` shared CNN/DM articles (cut to `--words` words), `n` samples per article,
temperature 0.8, top_p 0.95, `--max-new-tokens` new tokens. Each engine first answers one warm-up
request; the timed call is then one `generate` over all articles (the backend's own batching).

- transformers: `TransformersBackend` in this process (the orchestrator's environment), on
  `--threads` threads.
- vllm-ray: `VLLMBackend` in a Ray actor started in the worker environment (`.venv-vllm`, through
  `docker/runtime_env.cpu.yaml`), as the pipeline runs it; eager mode.
- vllm-server: `python -m vllm.entrypoints.openai.api_server` from the worker environment on
  127.0.0.1, driven by our `OpenAIBackend`; eager mode.

Setup cost is reported apart: engine start (load, or process start until healthy), and the
worker environment's install time is measured by `make worker-env` (see benchmarks/RESULTS.md).

    .venv/bin/python benchmarks/vllm_cpu.py                  # all three
    .venv/bin/python benchmarks/vllm_cpu.py --only vllm-ray

Prints a table and writes `$OUT/vllm_cpu.json` when OUT is set.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sumpref.backends.base import SamplingParams  # noqa: E402
from sumpref.config import OpenAIBackendConfig, TransformersBackendConfig, VLLMBackendConfig  # noqa: E402
from sumpref.model_paths import resolve_model  # noqa: E402
from sumpref.prompts import summary_messages  # noqa: E402

MODEL = "embedded:smollm2-135m-instruct"
CPU_RUNTIME_ENV = ROOT / "docker" / "runtime_env.cpu.yaml"
WORKER_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


def load_prompts(k: int, words: int) -> list:
    rows = []
    with open(ROOT.parent / "shared" / "data" / "cnndm_cliff.jsonl") as f:
        for line in f:
            rows.append(summary_messages(" ".join(json.loads(line)["article"].split()[:words])))
            if len(rows) == k:
                break
    return rows


def measure(backend, prompts, params) -> dict:
    backend.generate(prompts[:1], SamplingParams(n=1, max_new_tokens=4))  # warm-up
    t0 = time.perf_counter()
    gens = backend.generate(prompts, params)
    secs = time.perf_counter() - t0
    ok = [g for gs in gens for g in gs if g.finish_reason != "error"]
    out_tokens = sum(g.output_tokens for g in ok)
    return {"seconds": round(secs, 2), "summaries": len(ok), "errors": sum(len(gs) for gs in gens) - len(ok),
            "output_tokens": out_tokens, "summaries_per_s": round(len(ok) / secs, 3),
            "output_tokens_per_s": round(out_tokens / secs, 2)}


def run_transformers(prompts, params, threads: int) -> dict:
    from sumpref.backends.transformers_backend import TransformersBackend

    t0 = time.perf_counter()
    backend = TransformersBackend(TransformersBackendConfig(model=MODEL, batch_size=len(prompts)), num_threads=threads)
    backend.load()
    setup = time.perf_counter() - t0
    return {"engine_start_s": round(setup, 1), **measure(backend, prompts, params)}


class _RayEngine:
    """The vLLM engine in a Ray actor of the worker environment (defined here: pickled by value)."""

    def __init__(self, cfg):
        from sumpref.backends.vllm_ray import VLLMBackend

        self.backend = VLLMBackend(cfg)

    def start(self) -> float:
        t0 = time.perf_counter()
        self.backend.load()
        return time.perf_counter() - t0

    def measure(self, prompts, params) -> dict:
        return measure(self.backend, prompts, params)


def run_vllm_ray(prompts, params, threads: int) -> dict:
    import ray

    from sumpref.backends.vllm_ray import load_runtime_env

    cfg = VLLMBackendConfig(model=MODEL, max_model_len=2048, gpu_memory_utilization=0.25, enforce_eager=True,
                            runtime_env=str(CPU_RUNTIME_ENV))
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, num_cpus=threads)
    try:
        actor = ray.remote(_RayEngine).options(num_cpus=threads, runtime_env=load_runtime_env(cfg.runtime_env)).remote(cfg)
        load_s = ray.get(actor.start.remote())
        setup = time.perf_counter() - t0
        res = ray.get(actor.measure.remote(prompts, params))
    finally:
        ray.shutdown()
    return {"engine_start_s": round(setup, 1), "engine_load_in_actor_s": round(load_s, 1), **res}


def run_vllm_server(prompts, params, threads: int) -> dict:
    import yaml

    from sumpref.backends.openai_http import OpenAIBackend

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env_vars = yaml.safe_load(CPU_RUNTIME_ENV.read_text()).get("env_vars") or {}
    env = {**os.environ, **{k: str(v) for k, v in env_vars.items()}}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # the async server runs its engine core apart
    cmd = [str(WORKER_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", resolve_model(MODEL),
           "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "2048",
           "--enforce-eager", "--gpu-memory-utilization", "0.25", "--disable-log-stats"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(1)
        setup = time.perf_counter() - t0
        backend = OpenAIBackend(OpenAIBackendConfig(model="smollm2", base_url=f"http://127.0.0.1:{port}/v1",
                                                    max_concurrency=len(prompts), request_timeout_s=900, max_retries=0))
        backend.load()
        return {"engine_start_s": round(setup, 1), **measure(backend, prompts, params)}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


RUNNERS = {"transformers": run_transformers, "vllm-ray": run_vllm_ray, "vllm-server": run_vllm_server}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--articles", type=int, default=8)
    ap.add_argument("--words", type=int, default=300)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=sorted(RUNNERS), action="append")
    args = ap.parse_args()

    prompts = load_prompts(args.articles, args.words)
    params = SamplingParams(n=args.n, temperature=0.8, top_p=0.95, max_new_tokens=args.max_new_tokens, seed=0)
    results = {"date": time.strftime("%Y-%m-%d"), "load_avg_at_start": os.getloadavg()[0],
               "workload": {k: v for k, v in vars(args).items() if k != "only"}, "runs": {}}
    for name in args.only or list(RUNNERS):
        print(f"running {name} ...", flush=True)
        results["runs"][name] = RUNNERS[name](prompts, params, args.threads)
        print(f"  {results['runs'][name]}", flush=True)

    print(f"\n{'backend':<14}{'start s':>9}{'gen s':>8}{'summaries/s':>13}{'out tok/s':>11}{'errors':>8}")
    for name, r in results["runs"].items():
        print(f"{name:<14}{r['engine_start_s']:>9}{r['seconds']:>8}{r['summaries_per_s']:>13}"
              f"{r['output_tokens_per_s']:>11}{r['errors']:>8}")
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "vllm_cpu.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
