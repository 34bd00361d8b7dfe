"""Answer graders. ``scorebench.grading.math`` grades MATH-style boxed answers (math-verify plus guards).

Deliberately imports nothing: ``python -m scorebench.grading.pool --worker`` starts grading worker processes, and
importing the submodule here would make runpy warn about it being imported twice.
"""
