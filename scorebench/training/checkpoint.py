"""Checkpoints of a Trainer: weights in ``save_pretrained`` format plus optimizer, scheduler, RNG states and the
step count, written to a temporary directory and renamed, so a run killed at any point resumes from the last
complete one to bit-identical weights; and the JSONL logs trimmed to the checkpoint on resume, so every step is
logged exactly once."""
from __future__ import annotations

import copy
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from ..rundir import atomic_write


class Checkpoints:
    """What a Trainer mixes in: needs ``out_dir``, ``cfg``, ``accelerator``, ``model``, ``tokenizer``,
    ``optimizer``, ``scheduler``, ``step_count``, ``planned_steps`` and ``log_path``."""

    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    def latest_checkpoint(self) -> Path | None:
        if not self.ckpt_dir.exists():
            return None
        done = [p for p in self.ckpt_dir.glob("step-*") if (p / ".complete").exists()]
        return max(done, key=_step_of) if done else None

    def save_checkpoint(self, keep: int = 1) -> Path:
        """Weights (save_pretrained: adapter or full), tokenizer, optimizer, scheduler, RNG states, step count;
        written to a temp dir and renamed, so a kill mid-save leaves the previous checkpoint intact."""
        self.accelerator.wait_for_everyone()
        final = self.ckpt_dir / f"step-{self.step_count:07d}"
        if self.accelerator.is_main_process:
            tmp = self.ckpt_dir / f".tmp-{final.name}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            self.model.save_pretrained(tmp / "model")
            self.tokenizer.save_pretrained(tmp / "model")
            torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                        "step_count": self.step_count, "planned_steps": self.planned_steps,
                        "cfg": self.cfg.to_dict(),
                        "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                                "torch": torch.get_rng_state(),
                                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}},
                       tmp / "trainer_state.pt")
            (tmp / ".complete").write_text(str(self.step_count))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            done = sorted((p for p in self.ckpt_dir.glob("step-*") if (p / ".complete").exists()), key=_step_of)
            for old in done[:-keep] if keep else []:
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        return final

    def resume(self) -> bool:
        """Load the latest complete checkpoint in ``out_dir``; False when there is none."""
        ckpt = self.latest_checkpoint()
        if ckpt is None:
            if self.accelerator.is_main_process:  # a run killed before its first checkpoint starts its log anew
                drop_steps_after(self.log_path, 0)
            return False
        from safetensors.torch import load_file
        mdir = ckpt / "model"
        if self.cfg.lora:
            from peft import set_peft_model_state_dict
            set_peft_model_state_dict(self.model, load_file(str(mdir / "adapter_model.safetensors")))
        else:
            sd = {}
            for f in sorted(mdir.glob("*.safetensors")):
                sd.update(load_file(str(f)))
            missing, unexpected = self.model.load_state_dict(sd, strict=False)
            loaded = {p.data_ptr() for n, p in self.model.state_dict().items() if n in sd}
            bad = [n for n in missing if self.model.state_dict()[n].data_ptr() not in loaded]
            if bad or unexpected:
                raise RuntimeError(f"checkpoint {ckpt} does not match the model (missing {bad[:3]}, "
                                   f"unexpected {list(unexpected)[:3]})")
        state = torch.load(ckpt / "trainer_state.pt", map_location="cpu", weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step_count = state["step_count"]
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        if self.accelerator.is_main_process:
            drop_steps_after(self.log_path, self.step_count)
        return True

    def save_policy(self, path: str | Path) -> Path:
        """Merged full weights + tokenizer, loadable by ``scorebench.models.load(path)``; ``.complete`` last."""
        path = Path(path)
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            tmp = path.parent / f".tmp-{path.name}"
            shutil.rmtree(tmp, ignore_errors=True)
            m = self.model
            if self.cfg.lora:
                m = copy.deepcopy(m).merge_and_unload()
            m.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            (tmp / ".complete").write_text(json.dumps({"step": self.step_count}))
            shutil.rmtree(path, ignore_errors=True)
            os.replace(tmp, path)
        self.accelerator.wait_for_everyone()
        return path


def drop_steps_after(path: Path, step: int) -> None:
    """After a resume from a checkpoint at ``step``, forget the log lines of the steps that will be redone, so a
    JSONL log (train_log, rollouts) holds every step exactly once."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    keep = [x for x in lines if x.strip() and json.loads(x).get("step", 0) <= step]
    if len(keep) != len(lines):
        atomic_write(path, "".join(keep))


def _step_of(p: Path) -> int:
    return int(p.name.split("-")[-1])
