"""``self-refine`` (Madaan et al. 2023): prompting only. Before each correction the model is asked to critique
its previous answer (an ungraded turn), then to refine it in light of that feedback."""
from scorebench.api import Method, ProtocolConfig

FEEDBACK_PROMPT = "Review your previous answer and find problems with your answer."
REFINE_INSTRUCTION = ("Based on the problems you found, improve your answer. "
                      "Please reiterate your answer, with your final answer at the end.")


class SelfRefineMethod(Method):
    description = "Self-Refine: the model critiques its answer (ungraded), then refines it; no training"
    trains = False

    def protocol(self, turns: int) -> ProtocolConfig:
        return ProtocolConfig(turns=turns, feedback_prompt=FEEDBACK_PROMPT, refine_instruction=REFINE_INSTRUCTION)
