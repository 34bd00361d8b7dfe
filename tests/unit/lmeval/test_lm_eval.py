"""lm-evaluation-harness as an independent check of Acc@t1 (``scorebench lm-eval``, ``scorebench/lmeval/``).

The main test runs lm-eval (its own HF model and ``generate``) on five ``arith`` problems with the embedded model
and checks that its per-problem correctness — and its response text — equals scorebench's turn 1 (the protocol
with turns=1, temperature 0, computed here independently of the code under test) on the same problems.
"""
import json
import os

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from scorebench import get_task  # noqa: E402
from scorebench.cli import main  # noqa: E402
from scorebench.protocol import Episode, Turn  # noqa: E402

PROBLEMS = [7, 8, 9, 10, 12]
"""Test problems (positions) that the embedded model answers partly right and partly wrong at turn 1, so equal
vectors mean something: a harness that marked everything wrong (or right) would fail."""


@pytest.fixture(scope="module")
def lm_eval_run(tmp_path_factory):
    from scorebench.lmeval.check import check
    out = tmp_path_factory.mktemp("lm_eval")
    report = check("embedded", "scorebench_arith", out=str(out), indices=PROBLEMS, batch_size=8)
    return out, report


@pytest.fixture(scope="module")
def scorebench_turn1():
    """scorebench's turn 1 on the same problems: the shared protocol, turns=1, greedy, the task's token cap,
    computing in float32 as lm-eval's HF model does (the engine's bf16 default would be a different model)."""
    from scorebench.engines import SamplingParams
    from scorebench.engines.hf import HFEngine
    from scorebench.protocol import ProtocolConfig, run_protocol
    task = get_task("arith")
    examples = [task.test()[i] for i in PROBLEMS]
    engine = HFEngine(model_name=None, compute_dtype="float32", batch_size=8)
    eps = run_protocol(engine, task, examples, SamplingParams(temperature=0.0, max_new_tokens=task.max_new_tokens),
                       protocol=ProtocolConfig(turns=1), progress=False)
    return eps, engine.tokenizer


@pytest.mark.model
def test_lm_eval_matches_scorebench_turn1_per_problem(lm_eval_run, scorebench_turn1):
    from scorebench.engines.base import render_ids
    out, report = lm_eval_run
    eps, tokenizer = scorebench_turn1
    samples = sorted((json.loads(line) for line in (out / "samples_scorebench_arith.jsonl").read_text().splitlines()),
                     key=lambda s: s["doc_id"])
    task = get_task("arith")
    assert [s["doc_id"] for s in samples] == PROBLEMS
    assert [s["doc"]["id"] for s in samples] == [ep.id for ep in eps] == [f"test/{i}" for i in PROBLEMS]

    # The same prompt: lm-eval's rendered context tokenizes to exactly the ids scorebench prompts with.
    for s, ep in zip(samples, eps):
        context = s["arguments"]["gen_args_0"]["arg_0"]
        assert tokenizer(context)["input_ids"] == render_ids(tokenizer, [{"role": "user", "content": task.prompt(
            s["doc"])}])
        assert ep.turns[0].prompt == task.prompt(s["doc"])

    lm_correct = [bool(s["acc"]) for s in samples]
    sb_correct = [bool(ep.turns[0].reward) for ep in eps]
    assert lm_correct == sb_correct, (lm_correct, sb_correct)
    assert 0 < sum(sb_correct) < len(PROBLEMS), "pick problems the model gets partly right, or this proves little"
    # Same prompt, same greedy decoding, both in float32: the same text (lm-eval does not strip).
    assert [s["resps"][0][0].strip() for s in samples] == [ep.turns[0].response for ep in eps]

    # What the command wrote agrees with the above.
    results = json.loads((out / "results.json").read_text())
    assert results["results"]["scorebench_arith"]["acc,none"] == pytest.approx(sum(sb_correct) / len(PROBLEMS))
    cmp = json.loads((out / "comparison.json").read_text())["tasks"]["scorebench_arith"]
    assert cmp["per_problem"] == [{"id": ep.id, "lm_eval": c, "scorebench": c, "same_response": True}
                                  for ep, c in zip(eps, sb_correct)]
    assert (cmp["agree"], cmp["disagree"], cmp["max_new_tokens"]) == (len(PROBLEMS), 0, task.max_new_tokens)
    assert report["tasks"]["scorebench_arith"]["scorebench_acc_t1"] == pytest.approx(sum(sb_correct) / len(PROBLEMS))
    assert "| scorebench_arith | 5 |" in (out / "comparison.md").read_text()


def test_task_files_match_the_scorebench_tasks():
    """The lm-eval tasks read the packaged data in the task's order, prompt with task.prompt, grade with
    task.evaluate, and cap tokens at the task's max_new_tokens (greedy, stop only at end of turn)."""
    from lm_eval.tasks import TaskManager

    from scorebench.lmeval import LM_EVAL_TASKS, TASKS_DIR
    tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    loaded = tm.load(list(LM_EVAL_TASKS))["tasks"]
    for name, sb_name in LM_EVAL_TASKS.items():
        lm_task, task = loaded[name], get_task(sb_name)
        docs, test = list(lm_task.test_docs()), task.test()
        assert [d["id"] for d in docs] == [ex["id"] for ex in test]
        assert lm_task.doc_to_text(docs[3]) == task.prompt(test[3])
        gk = lm_task.config.generation_kwargs
        assert (gk["max_gen_toks"], gk["do_sample"], gk["temperature"], gk["until"]) == \
            (task.max_new_tokens, False, 0.0, [])
        gold = str(test[3]["answer"])
        right = f"The answer is \\boxed{{{gold}}}."
        assert lm_task.process_results(docs[3], [right]) == {"acc": float(task.evaluate(test[3], right)["correct"])}
        assert lm_task.process_results(docs[3], [right])["acc"] == 1.0
        assert lm_task.process_results(docs[3], ["no idea"])["acc"] == 0.0


def test_task_arguments_reach_the_docs_hook():
    from scorebench.lmeval import utils
    docs = utils.arith_docs(steps=2, max_operand=5, version=1.0, pretrained="ignored")["test"]
    assert [d["problem"] for d in docs] == [ex["problem"] for ex in get_task("arith", steps=2, max_operand=5).test()]


def _run_dir(path, episodes, **config):
    path.mkdir()
    cfg = {"config": {"method": "base", "task": "arith", "task_args": {}, "temperature": 0.0, "model": None,
                      **config}, "max_new_tokens": 64, "engine": {"engine": "hf", "compute_dtype": "bfloat16"}}
    (path / "config.json").write_text(json.dumps(cfg))
    (path / "episodes.jsonl").write_text("".join(json.dumps(e.to_json()) + "\n" for e in episodes) + '{"id": "tru')
    return path


def _ep(i, reward, text="x"):
    return Episode(id=f"test/{i}", turns=[Turn(prompt="p", response=text, reward=reward, info={"pred": None})])


def test_run_directory_episodes_are_used_only_when_comparable(tmp_path):
    from scorebench.lmeval.check import run_episodes
    eps = [_ep(0, 1.0), _ep(1, 0.0)]
    ok = _run_dir(tmp_path / "ok", eps)
    got, engine, why = run_episodes(ok, "arith", {}, ["test/0", "test/1"], 64)
    assert why is None and [e.id for e in got] == ["test/0", "test/1"] and engine["compute_dtype"] == "bfloat16"
    assert run_episodes(ok, "arith", {}, ["test/0", "test/2"], 64)[2] == "the run has no episode for 1 of the 2 problems"
    assert "token cap" in run_episodes(ok, "arith", {}, ["test/0"], 32)[2]
    assert "temperature" in run_episodes(_run_dir(tmp_path / "hot", eps, temperature=0.7), "arith", {},
                                         ["test/0"], 64)[2]
    assert "task" in run_episodes(ok, "math500", {}, ["test/0"], 64)[2]


def test_compare_counts_and_names_disagreements():
    from scorebench.lmeval.check import compare
    task = get_task("arith")
    test = task.test()
    samples = [{"doc": test[i], "resps": [[r]], "acc": float(task.evaluate(test[i], r)["correct"])}
               for i, r in [(0, f"{test[0]['answer']}"), (1, "-1"), (2, f"{test[2]['answer']}")]]
    eps = [_ep(0, 1.0, f"{test[0]['answer']}"), _ep(1, 1.0, "something else"), _ep(2, 0.0, "no")]
    c = compare(task, samples, eps)
    assert (c["n"], c["agree"], c["disagree"], c["disagree_ids"]) == (3, 1, 2, ["test/1", "test/2"])
    assert (c["only_lm_eval_correct"], c["only_scorebench_correct"], c["same_response"]) == (1, 1, 1)
    assert c["lm_eval_acc"] == pytest.approx(2 / 3) and c["scorebench_acc_t1"] == pytest.approx(2 / 3)
    assert c["disagreements"][0]["lm_eval_pred"] == -1


@pytest.mark.parametrize("argv, msg", [
    (["lm-eval", "no/such/dir/here"], "does not exist"),
    (["lm-eval", "nope-not-cached/model"], "runs offline"),
    (["lm-eval", "embedded", "--tasks", "gsm8k"], "unknown task 'gsm8k'"),
    (["lm-eval", "embedded", "--limit", "0"], "--limit must be >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(argv, msg, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()
