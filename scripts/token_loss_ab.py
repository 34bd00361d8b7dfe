"""The fused output-layer loss of a commit against this checkout's: forward + backward on the same 1,300 rows
(hidden 576, the embedded model's 49,152-token vocabulary, a KL term on every row), ABBA three times in one process,
process-CPU seconds; and how far the two results are apart.

    OMP_NUM_THREADS=1 python scripts/token_loss_ab.py 7ca69df > results/signal-arith/token-loss-ab.json   # ~1.5 min
"""
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from scorebench.machine import cpu_model
from scorebench.training import token_loss as new_mod

rev = sys.argv[1] if len(sys.argv) > 1 else "HEAD"
src = subprocess.run(["git", "show", f"{rev}:scorebench/training/token_loss.py"], capture_output=True, text=True,
                     check=True, cwd=Path(__file__).resolve().parents[1]).stdout
path = Path(tempfile.mkdtemp()) / "old_token_loss.py"
path.write_text(src)
spec = importlib.util.spec_from_file_location("old_token_loss", path)
old_mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(old_mod)

torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
n, d, v = 1300, 576, 49152
w = torch.nn.Parameter(torch.randn(v, d, generator=g) * 0.05)
h0 = torch.randn(n, d, generator=g)
href = h0 + 0.1 * torch.randn(n, d, generator=g)
wref = w.detach() + 0.01 * torch.randn(v, d, generator=g)
t = torch.randint(0, v, (n,), generator=g)
ws, ks = torch.randn(n, generator=g), torch.full((n,), 0.05)


def run(mod):
    h = h0.clone().requires_grad_()
    w.grad = None
    c = time.process_time()
    out = mod.fused_token_loss(h, w, t, ws, ks, href, wref, 0.7, "full")
    (out[0] / 64).backward()
    return time.process_time() - c, float(out[0].detach()), h.grad.clone(), w.grad.clone()


secs = {"old": [], "new": []}
for _ in range(3):
    for name, mod in (("old", old_mod), ("new", new_mod), ("new", new_mod), ("old", old_mod)):
        secs[name].append(run(mod)[0])
a, b = run(old_mod), run(new_mod)
cpu = cpu_model()
print(json.dumps({"old": rev, "rows": n, "cpu": cpu, "threads": 1, "cpu_s": secs,
                  "mean_cpu_s": {k: sum(x) / len(x) for k, x in secs.items()},
                  "ratio_old_over_new": (sum(secs["old"]) / sum(secs["new"])),
                  "loss": {"old": a[1], "new": b[1]},
                  "grad_h_max_rel_diff": float((a[2] - b[2]).abs().max() / a[2].abs().max()),
                  "grad_w_max_rel_diff": float((a[3] - b[3]).abs().max() / a[3].abs().max()),
                  "command": "python scripts/token_loss_ab.py " + rev}, indent=1))
