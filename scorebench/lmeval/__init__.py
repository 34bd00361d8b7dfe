"""scorebench's single-turn tasks as lm-evaluation-harness tasks: an independent check of Acc@t1.

lm-eval cannot express the two-turn protocol, but it can measure turn 1 — the same model on the same problems
with the same prompt, decoded greedily by a different harness — which is what most readers would use to check
that training for self-correction did not cost first-attempt accuracy. This folder holds:

* ``scorebench_arith.yaml``, ``scorebench_math500.yaml``: lm-eval task files (pass this folder to lm-eval's
  ``--include_path``; ``TASKS_DIR`` names it). They read the packaged data through ``utils.py`` (no hub).
* ``utils.py``: the ``!function`` hooks — docs, prompt and grading all call the scorebench task itself, so each
  rule has one definition.
* ``check.py``: ``scorebench lm-eval``: run lm-eval and scorebench's protocol (turns=1, greedy) on the same
  problems and compare them problem by problem.
"""
from pathlib import Path

TASKS_DIR = Path(__file__).parent
"""The folder to give lm-eval as ``--include_path`` (or ``TaskManager(include_path=...)``)."""

LM_EVAL_TASKS = {"scorebench_arith": "arith", "scorebench_math500": "math500"}
"""lm-eval task name -> scorebench task name (one YAML file each in ``TASKS_DIR``)."""
