"""The example plugins in examples/ install out of tree and run through the CLI with no core change: an
inference-time method (overrides Method.rollout, uses Task.extract) and a task, both found via entry points."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository


def test_example_plugins_install_and_run(tmp_path, tiny_model_dir):
    import shutil
    site = tmp_path / "site"
    srcs = [shutil.copytree(ROOT / "examples" / name, tmp_path / name) for name in ("vote_plugin", "parity_task")]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), *map(str, srcs)], check=True, cwd=tmp_path)  # built outside the repo
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "scorebench"]
    listed = subprocess.run(cli + ["tasks"], env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert "parity" in listed.stdout
    out = tmp_path / "run"
    r = subprocess.run(cli + ["run", "--method", "turn2-vote", "--task", "parity", "--task-arg", "n_test=3",
                              "--model", str(tiny_model_dir), "--max-new-tokens", "4", "--out", str(out)],
                       env=env, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    eps = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(eps) == 3 and all(len(e["turns"]) == 2 for e in eps)
    assert all(len(e["turns"][1]["info"]["votes"]) == 5 for e in eps)  # the plugin's rollout made turn 2
    assert json.loads((out / "config.json").read_text())["config"]["method"] == "turn2-vote"
