"""An inference-time method as a plugin: turn 2 is the majority answer of ``n`` sampled corrections.

It needs no core change: it overrides ``Method.rollout`` (evaluation goes through it), runs the shared protocol
for the first attempt, samples ``n`` corrections of each at temperature 0.7 through the same engine, and keeps
the one whose answer (``task.extract``, the grader's own reading) is the most common.
"""
from collections import Counter
from dataclasses import replace

from scorebench.method import Method
from scorebench.protocol import ProtocolConfig, Turn, run_protocol


class Turn2Vote(Method):
    description = "inference-time plugin: turn 2 = majority answer of 5 sampled corrections"
    trains = False
    n = 5

    def rollout(self, engine, task, examples, params, turns, on_episodes=None, chunk_size=64, progress=True):
        eps = run_protocol(engine, task, examples, params, ProtocolConfig(turns=1), chunk_size=chunk_size,
                           progress=progress)
        convs = [e.messages() + [{"role": "user", "content": task.correction_instruction}] for e in eps]
        outs = engine.generate(convs, replace(params, n=self.n, temperature=0.7))
        for ex, e, comps in zip(examples, eps, outs):
            answers = [task.extract(c.text) for c in comps]
            top = Counter(a for a in answers if a is not None).most_common(1)
            pick = comps[answers.index(top[0][0])] if top else comps[0]
            res = task.evaluate_batch([ex], [pick.text])[0]
            e.turns.append(Turn(prompt=task.correction_instruction, response=pick.text, reward=float(res["reward"]),
                                finish_reason=pick.finish_reason, n_tokens=len(pick.token_ids),
                                info={"votes": [repr(a) for a in answers]}))
        if on_episodes:
            on_episodes(eps)
        return eps
