"""Checkpoint integrity: damage that torch.load does not see is refused on every read, a resume passes over damaged
checkpoints to the newest one that verifies, rotation never deletes that one, and old checkpoints still load."""

import warnings

import pytest
import torch

from cs336_lm.errors import CheckpointError, DamagedCheckpointError, UnverifiedCheckpointWarning
from cs336_lm.nn import TransformerLM
from cs336_lm.optim import AdamW
from cs336_lm.run import RunDir, load_checkpoint, read_checkpoint, save_checkpoint
from cs336_lm.run import checkpoint as ckpt_module

SHAPE = {"vocab_size": 32, "context_length": 8, "d_model": 16, "num_layers": 1, "num_heads": 2, "d_ff": 32}


def trained_model(seed: int = 0) -> tuple[TransformerLM, AdamW]:
    torch.manual_seed(seed)
    model = TransformerLM(**SHAPE, rope_theta=10_000.0)
    opt = AdamW(model.parameters(), lr=1e-2)
    ids = torch.randint(0, 32, (2, 8))
    model(ids).logsumexp(-1).mean().backward()
    opt.step()
    return model, opt


def tensors(obj):
    """Every tensor in a nested checkpoint dict, in order."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict | list | tuple):
        for value in obj.values() if isinstance(obj, dict) else obj:
            yield from tensors(value)


@pytest.fixture
def checkpoint(tmp_path):
    model, opt = trained_model()
    path = tmp_path / "ck.pt"
    save_checkpoint(model, opt, 7, path, config={"model": SHAPE})
    return path


def test_a_saved_checkpoint_carries_the_digest_of_its_contents(checkpoint):
    raw = torch.load(checkpoint, weights_only=True)
    assert raw["digest"].startswith("sha256:") and len(raw["digest"]) == len("sha256:") + 64
    assert list(raw)[-1] == "digest"
    assert read_checkpoint(checkpoint)["iteration"] == 7


def test_flipped_tensor_bytes_are_refused_though_torch_load_reads_them(checkpoint, flip_tensor_bytes, monkeypatch):
    before = torch.load(checkpoint, weights_only=True)
    entry = flip_tensor_bytes(checkpoint)
    damaged = torch.load(checkpoint, weights_only=True)  # torch itself notices nothing...
    changed = [
        i for i, (a, b) in enumerate(zip(tensors(before), tensors(damaged), strict=True)) if not torch.equal(a, b)
    ]
    assert len(changed) == 1, entry  # ...though one tensor now holds other values
    with pytest.raises(DamagedCheckpointError, match=rf"^{checkpoint} is damaged: its contents differ from the SHA"):
        read_checkpoint(checkpoint)
    with pytest.raises(DamagedCheckpointError):
        load_checkpoint(checkpoint, trained_model(1)[0])
    monkeypatch.setattr(ckpt_module, "_verify_digest", lambda ckpt, name: None)
    read_checkpoint(checkpoint)  # without the digest check the damage would load: the check is what refuses it


def test_a_changed_plain_value_is_refused_too(checkpoint):
    raw = torch.load(checkpoint, weights_only=True)
    raw["iteration"] = 8  # e.g. a bit flipped in the pickled dict, or an edit that kept the old digest
    torch.save(raw, checkpoint)
    with pytest.raises(DamagedCheckpointError, match="is damaged"):
        read_checkpoint(checkpoint)


def test_bf16_checkpoints_and_file_objects_verify(tmp_path):
    model, _ = trained_model()
    state = {k: v.bfloat16() for k, v in model.state_dict().items()}
    save_checkpoint(ckpt_module.Snapshot(state), None, 1, tmp_path / "bf16.pt")
    loaded = read_checkpoint(tmp_path / "bf16.pt")
    assert all(torch.equal(loaded["model"][k], v) for k, v in state.items())
    with open(tmp_path / "bf16.pt", "rb") as f:
        assert read_checkpoint(f)["iteration"] == 1


def test_a_checkpoint_without_a_digest_loads_with_a_note(checkpoint):
    raw = torch.load(checkpoint, weights_only=True)
    del raw["digest"]  # as every checkpoint written before digests existed
    torch.save(raw, checkpoint)
    with pytest.warns(UnverifiedCheckpointWarning, match=rf"{checkpoint} carries no digest"):
        assert load_checkpoint(checkpoint, trained_model(1)[0]) == 7
    raw["digest"] = "md5:0123"
    torch.save(raw, checkpoint)
    with pytest.raises(CheckpointError, match="digest of an unknown kind"):
        read_checkpoint(checkpoint)


# ---------------------------------------------------------------------------------------------- a run directory


def run_with_checkpoints(root, steps=(1, 2, 3)) -> RunDir:
    model, opt = trained_model()
    run = RunDir(root)
    for step in steps:
        run.save_checkpoint(model, opt, step, keep_last=None, config={"model": SHAPE, "step": step})
    return run


def test_resume_passes_over_damaged_checkpoints_to_the_newest_that_verifies(tmp_path, flip_tensor_bytes):
    run = run_with_checkpoints(tmp_path / "run")
    for step in (3, 2):
        flip_tensor_bytes(run.checkpoint_path(step))
    point = run.load_resume("auto")
    assert point.path == run.checkpoint_path(1) and point.checkpoint["config"]["step"] == 1
    warning = point.warning()
    assert (
        warning.startswith(f"{run.checkpoint_path(3)} is damaged: ")
        and f"{run.checkpoint_path(2)} is damaged" in warning
    )
    assert warning.endswith(f"resuming from {run.checkpoint_path(1)}, the newest checkpoint that verifies")
    assert RunDir(tmp_path / "other").load_resume(str(run.root)).path == run.checkpoint_path(1)  # a run dir path
    with pytest.raises(DamagedCheckpointError, match=r"step_00000003\.pt is damaged"):  # a file: that one or nothing
        RunDir(tmp_path / "other").load_resume(str(run.checkpoint_path(3)))


def test_resume_refuses_when_no_checkpoint_verifies(tmp_path, flip_tensor_bytes):
    run = run_with_checkpoints(tmp_path / "run", steps=(1, 2))
    flip_tensor_bytes(run.checkpoint_path(2))
    run.checkpoint_path(1).write_bytes(run.checkpoint_path(1).read_bytes()[:1000])  # torn
    with pytest.raises(DamagedCheckpointError) as info:
        run.load_resume("auto")
    message = str(info.value)
    assert message.startswith(f"no checkpoint in {run.checkpoints_dir} can be resumed from: ")
    assert "step_00000002.pt is damaged" in message and "step_00000001.pt is not a readable checkpoint" in message


def test_resume_stops_at_a_checkpoint_that_is_foreign_rather_than_damaged(tmp_path):
    run = run_with_checkpoints(tmp_path / "run", steps=(1, 2))
    torch.save({"format_version": 99, "model": {}, "iteration": 2}, run.checkpoint_path(2))
    with pytest.raises(CheckpointError, match="format version 99"):
        run.load_resume("auto")  # going back to step 1 would silently drop whatever step 2 is


def test_rotation_never_deletes_the_newest_checkpoint_that_verifies(tmp_path, flip_tensor_bytes):
    run = run_with_checkpoints(tmp_path / "run", steps=(1, 2, 3))
    flip_tensor_bytes(run.checkpoint_path(2))
    flip_tensor_bytes(run.checkpoint_path(3))
    with pytest.warns(UserWarning, match=r"step_00000003.pt is damaged.*keeping .*step_00000001.pt, the newest"):
        run.prune(keep_last=1)
    assert [p.name for p in run.checkpoints()] == ["step_00000001.pt", "step_00000003.pt"]  # 3 is `latest`


def test_rotation_reads_back_only_the_newest_when_it_verifies(tmp_path, monkeypatch):
    run = run_with_checkpoints(tmp_path / "run", steps=(1, 2, 3, 4))
    verified = []
    real = ckpt_module.read_checkpoint
    monkeypatch.setattr("cs336_lm.run.checkpoint.read_checkpoint", lambda p, **kw: verified.append(p) or real(p, **kw))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run.prune(keep_last=2)
    assert verified == [run.checkpoint_path(4)]
    assert [p.name for p in run.checkpoints()] == ["step_00000003.pt", "step_00000004.pt"]
