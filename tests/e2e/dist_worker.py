"""One rank of the multi-process training checks in tests/e2e/test_distributed.py (launched by torch.distributed.run, or run
plainly as the 1-process reference): two SCoRe steps on given episodes, then two SFT steps on given sequences.

    python tests/e2e/dist_worker.py MODEL_DIR DATA.pkl OUT_DIR
"""
import json
import pickle
import sys

import torch


def main(model_dir: str, data_path: str, out: str) -> None:
    from scorebench import dist, models
    from scorebench.methods.score import ScoreAlgorithm, ScoreConfig
    from scorebench.training.config import TrainConfig
    from scorebench.training.rl import learn_step, make_trainer
    from scorebench.training.trainer import Trainer

    dist.init("cpu")
    with open(data_path, "rb") as f:
        data = pickle.load(f)
    k = data["k"]

    # RL: every rank is given the step's episodes and trains on its block of whole problems (as rl_train samples)
    model, tok = models.load(model_dir)
    tcfg = TrainConfig(lr=1e-2, dtype="float32", temperature=1.0, loss_normalization="sequences", micro_batch_size=4,
                       seed=0)
    algo = ScoreAlgorithm(ScoreConfig(stage1_steps=1, stage2_steps=1, problems_per_step=len(data["steps"][0]) // k,
                                      samples_per_problem=k))
    trainer = make_trainer(model, tok, tcfg, f"{out}/rl", algo.n_steps())
    for step, eps in enumerate(data["steps"]):
        problems = [eps[i:i + k] for i in range(0, len(eps), k)]
        learn_step(trainer, algo, tok, step, [e for p in dist.shard(problems) for e in p], k)
    if dist.is_main():
        torch.save(trainer.model.state_dict(), f"{out}/rl.pt")

    # SFT: fit() deals each batch's episodes to the ranks; 5 sequences in batches of 4 leave rank 1 nothing at step 2
    model, tok = models.load(model_dir)
    scfg = TrainConfig(lr=1e-2, dtype="float32", batch_size=4, micro_batch_size=2, seed=0)
    sft = Trainer(model, tok, scfg, f"{out}/sft", ref_model=False)
    sft.fit(data["sft"], steps=2, desc="sft")
    if dist.is_main():
        torch.save(sft.model.state_dict(), f"{out}/sft.pt")
        logs = {name: [json.loads(x) for x in open(f"{out}/{name}/train_log.jsonl")] for name in ("rl", "sft")}
        with open(f"{out}/logs.json", "w") as f:
            json.dump(logs, f)


if __name__ == "__main__":
    main(*sys.argv[1:4])
