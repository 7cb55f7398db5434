"""The guidance benchmark runs and compares like with like (no timing is asserted)."""

import importlib.util
import json

from conftest import REPO


def test_guidance_benchmark_loops_compute_the_same_loss(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_guidance", REPO / "benchmarks" / "bench_guidance.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "guidance.json"
    bench.main(["--steps", "2", "--repeats", "1", "--warmup", "0", "--batches", "1,2", "--out", str(out)])
    result = json.loads(out.read_text())
    text = json.dumps(result)
    assert "ratio" in text
    gaps = [v for k, v in _walk(result) if "gap" in k or "diff" in k]
    assert gaps and max(abs(g) for g in gaps) < 1e-5


def _walk(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{prefix}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{prefix}.{i}")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield prefix, node
