"""A trial's training state on disk: saved whole or not at all, read back, removed once the trial ends."""

from __future__ import annotations

import torch

from hpsearch.training.checkpoint import Checkpoint, CheckpointFile


def test_a_checkpoint_file_saves_loads_and_is_gone_once_deleted(tmp_path):
    file = CheckpointFile(tmp_path / "deeper" / "trial-0.pt")
    assert file.load() is None
    model = torch.nn.Linear(2, 1)
    file.save(Checkpoint(epoch=2, model=model.state_dict(), optimizer={}, generator=torch.Generator().get_state(),
                         cpu_rng=torch.get_rng_state(), cuda_rng=None, history=[{"epoch": 1}, {"epoch": 2}]))
    saved = file.load()
    assert saved.epoch == 2 and torch.equal(saved.model["weight"], model.weight) and len(saved.history) == 2
    file.delete()
    assert file.load() is None and not file.path.exists()
    file.delete()  # already gone: nothing to do
