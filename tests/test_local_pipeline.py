"""The whole graph on a real local transformers model (tiny, random weights, built in the test)."""

from __future__ import annotations

from robustft.backends.registry import ModelPool
from robustft.config import load_config
from robustft.demo import DEMO_DATA
from robustft.run.runner import denoise


def test_denoise_runs_on_a_local_transformers_model_with_batched_generation(tiny_model_dir, tmp_path):
    config = load_config(None, {
        "data": {"path": str(DEMO_DATA), "limit": 6},
        "model": {"provider": "transformers", "name": str(tiny_model_dir), "max_tokens": 12,
                  "batch_size": 4, "temperature": 1.0, "seed": 0},
        "denoise": {"concurrency": 4, "parse_retries": 0},
        "out": str(tmp_path / "run")})
    pool = ModelPool()
    result = denoise(config, pool=pool, progress=False, preflight=True)
    s = result.summary
    # A random model rarely writes "Answer: X": whatever it writes, every sample ends in a final
    # state with its raw responses kept, and the counts add up.
    assert s["total"] == 6 == s["clean"] + s["relabeled"] + s["confirmed"] + s["dropped"] + s["failed"]
    for rec in result.records:
        base = rec["nodes"]["base"]
        assert base["completion_tokens"] > 0 and base["prompt_tokens"] > 20
        assert base["score"] is not None and base["score"] > 0  # real logprobs from the scores
        assert isinstance(base["response"], str)
    model = pool.get(config.model_for("base"))
    # 4 samples in flight share batches: fewer generate() batches than model calls.
    assert model.batch_calls < s["model_calls"]["total"]
