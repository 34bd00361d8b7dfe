"""SCoRe and its ablations. Each registers through the ``scorebench.methods`` entry point (pyproject.toml), as
a plugin would; importing this package also registers them for in-tree use without an install."""
from scorebench.registry import METHODS

from .score import Score, ScoreNoShaping, ScoreNoStage1, ScoreSingleTurn, ScoreStarStage2

METHODS.register("score")(Score)
METHODS.register("score-no-stage1")(ScoreNoStage1)
METHODS.register("score-no-shaping")(ScoreNoShaping)
METHODS.register("score-single-turn")(ScoreSingleTurn)
METHODS.register("score-star-stage2")(ScoreStarStage2)
