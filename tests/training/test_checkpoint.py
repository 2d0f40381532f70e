"""Training checkpoints: complete round trips (parameters, AdamW, lr scheduler), atomic writes, pruning, 'latest'."""

import os

import pytest
import torch
from diffusers.optimization import get_scheduler

from diffusers_sspir.training import TrainingProgress, list_checkpoints, load_checkpoint, save_checkpoint
from diffusers_sspir.training import checkpoint as checkpoint_module
from diffusers_sspir.training.checkpoint import flatten_state, prune_checkpoints, resolve_checkpoint, unflatten_state


def make_run(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = get_scheduler("cosine", optimizer=optimizer, num_warmup_steps=2, num_training_steps=10)
    return model, optimizer, scheduler


def steps(model, optimizer, scheduler, count: int, start: int = 0) -> None:
    for step in range(start, start + count):
        inputs = torch.randn(3, 4, generator=torch.Generator().manual_seed(step))
        model(inputs).square().mean().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()


def test_flatten_round_trip_keeps_structure_and_types():
    state = {"state": {0: {"step": torch.tensor(3.0), "m": torch.ones(2)}}, "groups": [{"betas": (0.9, 0.99)}]}
    tensors = {}
    restored = unflatten_state(flatten_state(state, "o", tensors), tensors)
    assert set(tensors) == {"o.state.0.step", "o.state.0.m"}
    assert list(restored["state"]) == [0] and restored["groups"][0]["betas"] == (0.9, 0.99)
    torch.testing.assert_close(restored["state"][0]["m"], torch.ones(2))


def test_resumed_run_matches_an_uninterrupted_one(tmp_path):
    model, optimizer, scheduler = make_run()
    steps(model, optimizer, scheduler, 6)
    reference = [p.detach().clone() for p in model.parameters()]

    model, optimizer, scheduler = make_run()
    steps(model, optimizer, scheduler, 3)
    progress = TrainingProgress(global_step=3, epoch=1, batches_in_epoch=2)
    path = save_checkpoint(str(tmp_path), progress, dict(model.named_parameters()), optimizer, scheduler)
    assert os.path.basename(path) == "checkpoint-3"

    model, optimizer, scheduler = make_run(seed=1)  # different starting weights: all must come from the checkpoint
    restored = load_checkpoint(path, dict(model.named_parameters()), optimizer, scheduler)
    assert restored == progress
    steps(model, optimizer, scheduler, 3, start=3)
    for parameter, expected in zip(model.parameters(), reference):
        torch.testing.assert_close(parameter, expected, rtol=0, atol=0)


def test_interrupted_write_leaves_no_checkpoint(tmp_path, monkeypatch):
    model, optimizer, scheduler = make_run()
    real_write = checkpoint_module._write_json

    def crash_on_state(path, data):
        if path.endswith("state.json"):
            raise KeyboardInterrupt  # killed just before the checkpoint is complete
        real_write(path, data)

    monkeypatch.setattr(checkpoint_module, "_write_json", crash_on_state)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(str(tmp_path), TrainingProgress(5), dict(model.named_parameters()), optimizer, scheduler)
    assert os.listdir(tmp_path) == []
    assert resolve_checkpoint(str(tmp_path), "latest") is None


def test_partial_folder_is_not_a_checkpoint(tmp_path):
    (tmp_path / "checkpoint-9").mkdir()  # e.g. copied by hand without its state.json
    assert list_checkpoints(str(tmp_path)) == []
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        resolve_checkpoint(str(tmp_path), "checkpoint-9")


def test_latest_prune_and_replace(tmp_path):
    model, optimizer, scheduler = make_run()
    params = dict(model.named_parameters())
    for step in (2, 10, 4):
        save_checkpoint(str(tmp_path), TrainingProgress(step), params, optimizer, scheduler)
    assert [s for s, _ in list_checkpoints(str(tmp_path))] == [2, 4, 10]
    assert resolve_checkpoint(str(tmp_path), "latest").endswith("checkpoint-10")
    assert resolve_checkpoint(str(tmp_path), "checkpoint-4").endswith("checkpoint-4")
    with torch.no_grad():
        model[0].weight.add_(1)
    save_checkpoint(str(tmp_path), TrainingProgress(4), params, optimizer, scheduler)  # a replayed step
    fresh, fresh_optimizer, _ = make_run(seed=3)
    load_checkpoint(str(tmp_path / "checkpoint-4"), dict(fresh.named_parameters()), fresh_optimizer)
    torch.testing.assert_close(fresh[0].weight, model[0].weight)
    deleted = prune_checkpoints(str(tmp_path), total_limit=1)
    assert [os.path.basename(p) for p in deleted] == ["checkpoint-2", "checkpoint-4"]
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-10"]


def test_checkpoint_of_other_parameters_is_refused(tmp_path):
    model, optimizer, scheduler = make_run()
    path = save_checkpoint(str(tmp_path), TrainingProgress(1), dict(model.named_parameters()), optimizer)
    other = torch.nn.Linear(4, 2)
    with pytest.raises(ValueError, match="does not match the parameters being trained"):
        load_checkpoint(path, dict(other.named_parameters()), torch.optim.AdamW(other.parameters()))
