"""Gradients and AdamW's moments in one block each (``training/memory.py``): the same training, bit for bit, and the
tensors really in one block; micro-batches run longest first."""
from __future__ import annotations

import os

import pytest
import torch

from scorebench.training import Trainer
from scorebench.training import trainer as trainer_mod
from scorebench.training.memory import flat_adam_state, flat_grads

from test_trainer import cfg, seqs, tiny, tok  # noqa: F401  (tok: the fixture)


def _train(tok, path, steps=3, flat=True, monkeypatch=None):
    if not flat:
        monkeypatch.setattr(trainer_mod, "flat_grads", lambda params: None)
        monkeypatch.setattr(trainer_mod, "before_optimizer_step", lambda params, opt: None)
    tr = Trainer(tiny(tok), tok, cfg(lr=5e-2, batch_size=6, micro_batch_size=2), path, ref_model=False)
    seen = []
    orig = tr.optimizer.step

    def record(*a, **kw):  # what the step's gradients live in, as the optimizer sees them
        seen.append({p.grad.untyped_storage().data_ptr() for p in tr.params})
        return orig(*a, **kw)
    tr.optimizer.step = record
    for i in range(steps):
        tr.step(seqs(6, seed=i))
    if not flat:
        monkeypatch.undo()
    return tr, seen


def test_blocks_train_exactly_as_separate_tensors(tok, tmp_path, monkeypatch):
    a, seen_a = _train(tok, tmp_path / "flat")
    b, seen_b = _train(tok, tmp_path / "plain", flat=False, monkeypatch=monkeypatch)
    for (n, p), q in zip(a.model.named_parameters(), b.model.parameters()):
        assert torch.equal(p, q), n
    inner = a.optimizer.optimizer
    for name in ("exp_avg", "exp_avg_sq"):
        assert len({inner.state[p][name].untyped_storage().data_ptr() for p in a.params}) == 1, name
        assert all(torch.equal(inner.state[p][name], b.optimizer.optimizer.state[q][name])
                   for p, q in zip(a.params, b.params))
    assert all(len(s) == 1 for s in seen_a)  # every step's gradients: one block
    assert all(len(s) == len(b.params) for s in seen_b)  # without: one tensor each
    assert all(p.grad is None for p in a.params)  # freed after the step, so rollouts do not hold them


def test_loaded_moments_are_copied_into_blocks(tok, tmp_path):
    tr, _ = _train(tok, tmp_path / "a", steps=2)
    inner = tr.optimizer.optimizer
    state = inner.state_dict()
    state["state"] = {k: {n: v.clone() for n, v in st.items()} for k, st in state["state"].items()}
    fresh = Trainer(tiny(tok), tok, cfg(lr=5e-2, batch_size=6, micro_batch_size=2), tmp_path / "b", ref_model=False)
    opt = fresh.optimizer.optimizer
    opt.load_state_dict(state)  # one tensor per parameter and moment, as an older checkpoint holds
    assert len({opt.state[p]["exp_avg"].untyped_storage().data_ptr() for p in fresh.params}) == len(fresh.params)
    flat_adam_state(opt)
    for p, q in zip(fresh.params, tr.params):
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(opt.state[p][name], inner.state[q][name]), name
    assert len({opt.state[p]["exp_avg_sq"].untyped_storage().data_ptr() for p in fresh.params}) == 1


def test_flat_grads_keeps_existing_gradients_and_groups_by_dtype():
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(2, 2))
    c = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    kept = torch.full((3,), 7.0)
    a.grad = kept
    flat_grads([a, b, c])
    assert a.grad is kept
    assert b.grad.shape == (2, 2) and torch.equal(b.grad, torch.zeros(2, 2)) and c.grad.dtype == torch.float64
    (b.sum() * 2 + c.sum()).backward()  # autograd adds into the views in place
    assert torch.equal(b.grad, torch.full((2, 2), 2.0)) and torch.equal(c.grad, torch.ones(4, dtype=torch.float64))
    assert b.grad.untyped_storage().nbytes() == 4 * 4  # b's own block (a already had a gradient)


def test_micro_batches_run_longest_first(tok, tmp_path):
    for kw in ({"micro_batch_size": 2}, {"micro_batch_tokens": 14}):
        tr = Trainer(tiny(tok), tok, cfg(batch_size=6, **kw), tmp_path / str(len(kw)), ref_model=False)
        widths = [max(len(s.input_ids) for s in mb) for mb in tr.micro_batches(seqs(6))]
        assert len(widths) > 1 and widths == sorted(widths, reverse=True), (kw, widths)


def test_a_parameter_no_backward_reaches_is_left_alone(tok, tmp_path):
    """Its block gradient goes back to None before the optimizer step, so AdamW (weight decay included) skips it,
    as it did with one tensor per gradient."""
    model = tiny(tok)
    model.unused = torch.nn.Parameter(torch.ones(3))
    tr = Trainer(model, tok, cfg(lr=5e-2, weight_decay=0.5, batch_size=6, micro_batch_size=2), tmp_path,
                 ref_model=False)
    seen = []
    orig = tr.optimizer.step

    def record(*a, **kw):
        seen.append((model.unused.grad, model.model.norm.weight.grad is not None))
        return orig(*a, **kw)
    tr.optimizer.step = record
    for i in range(2):
        tr.step(seqs(6, seed=i))
    assert seen == [(None, True), (None, True)]
    assert torch.equal(model.unused.detach(), torch.ones(3))


def test_the_heap_is_trimmed_after_the_first_micro_batch_and_before_the_optimizer_step(tok, tmp_path, monkeypatch):
    """``after_micro_batch`` / ``before_optimizer_step``: the free pages the first (longest) micro-batch leaves go
    back before the next one, and the step's before the optimizer's moments come (``results/signal-arith.md`` §6,
    the thirteenth session)."""
    from scorebench.training import memory
    events = []
    monkeypatch.setattr(memory, "trim_heap", lambda: events.append("trim"))
    monkeypatch.setattr(memory, "rss_gb", lambda: 1.0)  # no growth: no trim on growth (the next test)
    tr = Trainer(tiny(tok), tok, cfg(lr=5e-2, batch_size=6, micro_batch_size=2), tmp_path, ref_model=False)
    backward, step = tr.accelerator.backward, tr.optimizer.step
    monkeypatch.setattr(tr.accelerator, "backward", lambda *a, **k: (events.append("backward"), backward(*a, **k)))
    tr.optimizer.step = lambda *a, **k: (events.append("step"), step(*a, **k))[1]
    tr.step(seqs(6))
    assert events == ["backward", "trim", "backward", "backward", "trim", "step"]


def test_a_later_micro_batch_trims_the_heap_once_the_resident_size_grew(monkeypatch):
    """In a run the heap's extent is set by the engine's phases, and each micro-batch lands on free pages of it not
    touched before: the resident size climbed 0.5-0.7 GB through a step. After a later micro-batch the heap is
    trimmed again once the resident size grew by more than ``TRIM_GROWTH_GB`` beyond its level after the first
    micro-batch that followed the last trim — not after every one, and not because that first micro-batch faulted
    its working set in again (each trim costs page faults)."""
    from scorebench.training import memory
    # resident size after micro-batches 1-8 (micro-batch 0 always trims and reads nothing)
    rss, trims = iter([4.20, 4.30, 4.38, 4.41, 4.25, 4.40, 4.44, 4.50]), []
    monkeypatch.setattr(memory, "trim_heap", lambda: trims.append(len(trims)))
    monkeypatch.setattr(memory, "rss_gb", lambda: next(rss))
    calls = []
    for i in range(9):
        before = len(trims)
        memory.after_micro_batch(i)
        calls.append(len(trims) > before)
    # mb1 4.20 is the level; mb2 +0.10, mb3 +0.18, mb4 +0.21: trim; mb5 4.25 (its working set back) is the new
    # level; mb6 +0.15, mb7 +0.19, mb8 +0.25: trim
    assert calls == [True, False, False, False, True, False, False, False, True]


def test_paged_out_moments_leave_the_resident_size_and_come_back_bit_for_bit(tmp_path):
    """``paged_out``: inside, the moment blocks' pages are gone (they read as zeros, the resident size fell by
    about their size); after, the moments are bitwise what they were and the next step equals one never paged."""
    from scorebench.machine import rss_gb
    from scorebench.training.memory import moment_blocks, paged_out
    n = 16 * 2 ** 20  # 64 MB a moment
    made = []
    for _ in range(2):
        p = torch.nn.Parameter(torch.linspace(-1, 1, n))
        opt = torch.optim.AdamW([p], lr=1e-2)
        p.grad = torch.cos(torch.arange(n, dtype=torch.float32))
        flat_adam_state(opt)
        opt.step()
        made.append((p, opt))
    (p, opt), (q, ref) = made
    blocks = moment_blocks(opt)
    assert len(blocks) == 2 and all(b.numel() == n for b in blocks)
    before = [b.clone() for b in blocks]
    rss0 = rss_gb()
    with paged_out(opt):
        inside = rss_gb()
        end_pages = 2 * os.sysconf("SC_PAGE_SIZE") // 4  # fp32 elements on the two partial end pages, at most
        assert all(int(b.count_nonzero()) <= end_pages for b in blocks)  # only those keep their bytes
    assert rss0 - inside > 0.8 * 2 * n * 4 / 1e9
    assert all(torch.equal(b, c) for b, c in zip(blocks, before))
    for x, o in ((p, opt), (q, ref)):
        x.grad = torch.sin(torch.arange(n, dtype=torch.float32))
        o.step()
    assert torch.equal(p, q)
    assert all(torch.equal(a, b) for a, b in zip(moment_blocks(opt), moment_blocks(ref)))


def test_paged_out_leaves_moments_outside_blocks_alone():
    from scorebench.training.memory import moment_blocks, paged_out
    p = torch.nn.Parameter(torch.ones(8))
    opt = torch.optim.AdamW([p])
    p.grad = torch.ones(8)
    opt.step()  # moments made by AdamW itself, one tensor each
    assert moment_blocks(opt) == [] and moment_blocks(None) == []
    with paged_out(opt), paged_out(None):
        assert torch.count_nonzero(opt.state[p]["exp_avg"]) == 8


def test_paged_out_keeps_the_moments_resident_when_the_file_cannot_be_written(monkeypatch):
    """A full disk must not kill a run's validation: the moments stay in memory, untouched, with a warning."""
    import tempfile

    from scorebench.training import memory
    p = torch.nn.Parameter(torch.ones(4096))
    opt = torch.optim.AdamW([p])
    p.grad = torch.ones(4096)
    flat_adam_state(opt)
    opt.step()
    before = [b.clone() for b in memory.moment_blocks(opt)]

    def full(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(tempfile, "TemporaryFile", full)
    with pytest.warns(UserWarning, match="stay in memory"), memory.paged_out(opt):
        assert all(torch.equal(b, c) for b, c in zip(memory.moment_blocks(opt), before))
    assert all(torch.equal(b, c) for b, c in zip(memory.moment_blocks(opt), before))
