"""The protocol's conversations, turn by turn, and its rendering through the chat template."""
from scorebench.engines.base import SamplingParams
from scorebench.protocol import SELF_CORRECTION_INSTRUCTION, ProtocolConfig, run_protocol
from scorebench.tasks.arith import Arith


def test_instruction_is_the_papers_verbatim():
    assert SELF_CORRECTION_INSTRUCTION == (
        "There might be an error in the solution above because of lack of understanding of the question. "
        "Please correct the error, if any, and rewrite the solution.")


def test_two_turn_conversation(scripted):
    task = Arith(n_train=1, n_test=3)
    ex = task.test()
    answers = {0: "wrong: -1", 1: f"{ex[0]['answer']}"}
    eng = scripted(lambda conv, k: answers[len(conv) // 2])
    eps = run_protocol(eng, task, ex, SamplingParams(temperature=0), progress=False)
    assert len(eng.calls) == 2
    t2 = eng.calls[1][0]
    assert [m["role"] for m in t2] == ["user", "assistant", "user"]
    assert t2[0]["content"] == task.prompt(ex[0])
    assert t2[1]["content"] == "wrong: -1"
    assert t2[2]["content"] == SELF_CORRECTION_INSTRUCTION
    assert [e.id for e in eps] == [x["id"] for x in ex]
    assert eps[0].rewards == [0.0, 1.0]


def test_k_turns_and_samples(scripted):
    task = Arith(n_train=1, n_test=2)
    eng = scripted(lambda conv, k: f"{len(conv)}-{k}")
    eps = run_protocol(eng, task, task.test(), SamplingParams(n=3), ProtocolConfig(turns=3),
                       samples_per_problem=3, progress=False)
    assert len(eps) == 6 and eps[0].id.endswith("#0")
    assert all(len(e.turns) == 3 for e in eps)
    assert [t.response for t in eps[1].turns] == ["1-1", "3-0", "5-0"]


def test_feedback_turns_are_ungraded(scripted):
    task = Arith(n_train=1, n_test=1)
    eng = scripted(lambda conv, k: "7")
    proto = ProtocolConfig(turns=2, feedback_prompt="Give feedback.", refine_instruction="Refine.")
    (e,) = run_protocol(eng, task, task.test(), SamplingParams(), proto, progress=False)
    assert [t.graded for t in e.turns] == [True, False, True]
    assert [t.prompt for t in e.turns[1:]] == ["Give feedback.", "Refine."]
    assert len(e.rewards) == 2


def test_given_first_attempt_is_not_generated(scripted):
    task = Arith(n_train=1, n_test=2)
    ex = [dict(task.test()[0], given_attempt="0")] + task.test()[1:]
    eng = scripted(lambda conv, k: "9")
    eps = run_protocol(eng, task, ex, SamplingParams(), progress=False)
    assert eps[0].turns[0].given and eps[0].turns[0].response == "0"
    assert len(eng.calls[0]) == 1  # only the non-given problem was sampled at turn 1
    assert [e.id for e in eps] == [x["id"] for x in ex]


def test_rendered_conversation(tokenizer, scripted):
    """What the model is prompted with at turn 2: ``render_ids`` of the conversation the protocol hands the engine,
    against the ChatML text written out by hand (the embedded model's template adds its default system turn)."""
    from scorebench.engines.base import render_ids

    class Task:
        name, kind, correction_instruction = "t", "math", SELF_CORRECTION_INSTRUCTION

        def prompt(self, ex):
            return "What is 2+2?"

        def meta(self, ex):
            return {}

        def evaluate_batch(self, examples, responses):
            return [{"reward": float(r == "4")} for r in responses]

    eng = scripted(lambda conv, k: "5" if len(conv) == 1 else "4")
    eps = run_protocol(eng, Task(), [{"id": "x"}], SamplingParams(temperature=0), progress=False)
    assert eps[0].rewards == [0.0, 1.0]
    want = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
            "<|im_start|>assistant\n5<|im_end|>\n"
            "<|im_start|>user\n" + SELF_CORRECTION_INSTRUCTION + "<|im_end|>\n"
            "<|im_start|>assistant\n")
    ids = render_ids(tokenizer, eng.calls[1][0])
    assert tokenizer.decode(ids) == want
    im_start, im_end = (tokenizer.convert_tokens_to_ids(s) for s in ("<|im_start|>", "<|im_end|>"))
    assert ids.count(im_start) == 5 and ids.count(im_end) == 4  # the markers are single control tokens
    assert ids == tokenizer(want, add_special_tokens=False)["input_ids"]


def test_problem_id_is_parsed_in_one_place(scripted):
    """An id that itself contains '#' still maps back to its problem (the sample suffix is cut from the right)."""
    from scorebench.protocol import problem_id
    task = Arith(n_train=1, n_test=2)
    exs = [dict(task.test()[0], id="train/7#x"), task.test()[1]]
    eps = run_protocol(scripted(lambda c, k: "5"), task, exs, SamplingParams(n=3), ProtocolConfig(turns=1),
                       samples_per_problem=3, progress=False)
    assert [problem_id(e.id) for e in eps] == ["train/7#x"] * 3 + [str(exs[1]["id"])] * 3
    assert problem_id("b") == "b"
