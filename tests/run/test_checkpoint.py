"""Checkpoints: round trip, RNG restore, atomic writes, run-directory bookkeeping and every error case."""

import io
import random
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from cs336_lm.errors import CheckpointError, UnverifiedCheckpointWarning
from cs336_lm.optim import AdamW, param_groups_for_weight_decay
from cs336_lm.run import RunDir
from cs336_lm.run import checkpoint as ckpt_module
from cs336_lm.run.checkpoint import (
    apply_checkpoint,
    capture_rng_state,
    load_checkpoint,
    read_checkpoint,
    restore_rng_state,
    save_checkpoint,
    unwrap_model,
)

# constructing the first optimizer imports torch._dynamo, whose own import raises these
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


class Tiny(nn.Module):
    """A stand-in LM: an embedding matrix, a gain vector and a projection."""

    def __init__(self, width=6, vocab=11):
        super().__init__()
        self.emb = nn.Parameter(torch.randn(vocab, width))
        self.gain = nn.Parameter(torch.ones(width))
        self.proj = nn.Parameter(torch.randn(vocab, width))

    def forward(self, ids):
        return (self.emb[ids] * self.gain) @ self.proj.T


def _trained(steps=3, seed=0, width=6):
    torch.manual_seed(seed)
    model = Tiny(width)
    opt = AdamW(param_groups_for_weight_decay(model, 0.1), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.arange(11)).logsumexp(-1).mean().backward()
        opt.step()
    return model, opt


def _assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        elif isinstance(a[k], dict):
            _assert_same_state(a[k], b[k])
        else:
            assert a[k] == b[k], k


def test_round_trip_restores_model_and_optimizer(tmp_path):
    model, opt = _trained()
    path = tmp_path / "ck.pt"
    save_checkpoint(model, opt, 3, path, config={"model": {"width": 6}}, wandb_run_id="abc123")
    raw = torch.load(path, weights_only=True)
    assert raw["format_version"] == 1 and raw["iteration"] == 3 and raw["wandb_run_id"] == "abc123"
    assert raw["config"] == {"model": {"width": 6}} and set(raw["rng"]) >= {"python", "numpy", "torch"}

    fresh, _ = _trained(steps=0, seed=1)
    fresh_opt = AdamW(param_groups_for_weight_decay(fresh, 0.1), lr=1e-2)
    assert load_checkpoint(path, fresh, fresh_opt) == 3
    _assert_same_state(fresh.state_dict(), model.state_dict())
    _assert_same_state(fresh_opt.state_dict()["state"], opt.state_dict()["state"])
    assert fresh_opt.state_dict()["param_groups"] == opt.state_dict()["param_groups"]


def test_file_objects_work_too():
    model, opt = _trained()
    buf = io.BytesIO()
    save_checkpoint(model, opt, 7, buf)
    buf.seek(0)
    fresh, _ = _trained(steps=0, seed=1)
    assert load_checkpoint(buf, fresh) == 7
    _assert_same_state(fresh.state_dict(), model.state_dict())


def test_compiled_and_wrapped_models_save_plain_keys(tmp_path):
    model, opt = _trained()
    wrapped = nn.DataParallel(model)
    assert unwrap_model(wrapped) is model
    save_checkpoint(wrapped, opt, 1, tmp_path / "a.pt")
    assert set(torch.load(tmp_path / "a.pt", weights_only=True)["model"]) == {"emb", "gain", "proj"}
    compiled = torch.compile(model)
    assert unwrap_model(compiled) is model
    # a checkpoint written elsewhere from the wrapper's own state_dict still loads into a plain model
    torch.save({"format_version": 1, "model": compiled.state_dict(), "iteration": 2}, tmp_path / "b.pt")
    fresh, _ = _trained(steps=0, seed=1)
    with pytest.warns(UnverifiedCheckpointWarning):  # written by hand, without a digest
        assert load_checkpoint(tmp_path / "b.pt", fresh) == 2
    _assert_same_state(fresh.state_dict(), model.state_dict())


def test_rng_round_trip_reproduces_draws(tmp_path):
    gen = np.random.default_rng(5)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    model, opt = _trained(steps=0)
    save_checkpoint(model, opt, 0, tmp_path / "ck.pt", rng=capture_rng_state(gen))

    def draws():
        return (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), torch.rand(3).tolist(),
                gen.integers(0, 1000, 4).tolist())  # fmt: skip

    expected = draws()
    draws()  # move every generator on
    gen = np.random.default_rng(99)
    restore_rng_state(read_checkpoint(tmp_path / "ck.pt")["rng"], data_generator=gen)
    assert draws() == expected


def test_rng_state_with_cached_gaussians_round_trips(tmp_path):
    random.gauss(0, 1)  # leaves a cached second normal in python's random
    np.random.standard_normal()  # and in numpy's legacy RNG
    buf = io.BytesIO()
    torch.save(capture_rng_state(), buf)
    expected = (random.gauss(0, 1), np.random.standard_normal())
    buf.seek(0)
    restore_rng_state(torch.load(buf, weights_only=True))
    assert (random.gauss(0, 1), np.random.standard_normal()) == expected


def test_missing_data_rng_is_an_error():
    with pytest.raises(CheckpointError, match="data-sampler"):
        restore_rng_state(capture_rng_state(), data_generator=np.random.default_rng())


def test_failed_save_leaves_previous_checkpoint_and_no_temp(tmp_path, monkeypatch):
    model, opt = _trained()
    path = tmp_path / "ck.pt"
    save_checkpoint(model, opt, 3, path)
    before = path.read_bytes()

    def torn_save(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_module.torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, opt, 4, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_run_dir_failure_keeps_latest_pointer(tmp_path, monkeypatch):
    model, opt = _trained()
    run, keep = RunDir(tmp_path), 2
    run.save_checkpoint(model, opt, 10, keep)
    monkeypatch.setattr(ckpt_module.torch, "save", lambda obj, f: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run.save_checkpoint(model, opt, 20, keep)
    assert RunDir(tmp_path).latest().name == "step_00000010.pt"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step_00000010.pt"]


def test_run_dir_keeps_last_k_and_points_at_latest(tmp_path):
    model, opt = _trained()
    run, keep = RunDir(tmp_path), 2
    assert run.latest() is None and RunDir(tmp_path / "nothing").latest() is None
    for step in (5, 10, 15, 20):
        path = run.save_checkpoint(model, opt, step, keep, config={"step": step})
        assert path == tmp_path / "checkpoints" / f"step_{step:08d}.pt"
        assert (tmp_path / "checkpoints" / "latest").read_text() == path.name + "\n"
    assert [p.name for p in RunDir(tmp_path).checkpoints()] == ["step_00000015.pt", "step_00000020.pt"]
    assert RunDir(tmp_path).latest() == tmp_path / "checkpoints" / "step_00000020.pt"
    assert read_checkpoint(RunDir(tmp_path).latest())["config"] == {"step": 20}


def test_run_dir_keeps_all_with_none_and_cleans_stale_temporaries(tmp_path):
    model, opt = _trained()
    run, keep = RunDir(tmp_path), None
    (tmp_path / "checkpoints").mkdir()
    stale = tmp_path / "checkpoints" / ".step_00000001.pt.abcd.tmp"
    stale.write_bytes(b"torn")
    for step in range(1, 5):
        run.save_checkpoint(model, opt, step, keep)
    assert len(RunDir(tmp_path).checkpoints()) == 4 and not stale.exists()
    with pytest.raises(ValueError):
        RunDir(tmp_path).prune(keep_last=0)


def test_latest_falls_back_to_newest_file_when_pointer_is_stale(tmp_path):
    model, opt = _trained()
    run, keep = RunDir(tmp_path), None
    run.save_checkpoint(model, opt, 1, keep)
    run.save_checkpoint(model, opt, 2, keep)
    (tmp_path / "checkpoints" / "latest").write_text("step_00000099.pt\n")
    assert RunDir(tmp_path).latest().name == "step_00000002.pt"
    (tmp_path / "checkpoints" / "latest").write_text("../../etc/passwd\n")
    assert RunDir(tmp_path).latest().name == "step_00000002.pt"


def test_error_missing_file_or_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt", Tiny())
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path, Tiny())


def test_error_truncated_file(tmp_path):
    model, opt = _trained()
    save_checkpoint(model, opt, 1, tmp_path / "ck.pt")
    data = (tmp_path / "ck.pt").read_bytes()
    for cut in (len(data) // 2, 10, 0):
        (tmp_path / "torn.pt").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"torn\.pt is not a readable checkpoint"):
            load_checkpoint(tmp_path / "torn.pt", Tiny())


def test_error_non_checkpoint_files(tmp_path):
    (tmp_path / "notes.txt").write_text("once upon a time\n")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("doc/readme.txt", "hello")
    torch.save(torch.ones(3), tmp_path / "tensor.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    np.save(tmp_path / "array.npy", np.zeros(3))
    for name in ("notes.txt", "other.zip", "array.npy"):
        with pytest.raises(CheckpointError, match=rf"{name} is not a"):
            load_checkpoint(tmp_path / name, Tiny())
    for name in ("tensor.pt", "foreign.pt"):
        with pytest.raises(CheckpointError, match=rf"{name} is a PyTorch file but not a cs336_lm checkpoint"):
            load_checkpoint(tmp_path / name, Tiny())


def test_error_unsafe_pickle_is_refused(tmp_path):
    torch.save({"format_version": 1, "model": {}, "iteration": 0, "evil": np.zeros(2)}, tmp_path / "unsafe.pt")
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_checkpoint(tmp_path / "unsafe.pt", Tiny())


def test_error_other_architecture_names_first_mismatch(tmp_path):
    model, opt = _trained(width=6)
    save_checkpoint(model, opt, 1, tmp_path / "ck.pt", config={"model": {"width": 6}})
    wider = Tiny(width=8)
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"different model architecture: 'emb' has shape \(11, 6\) in the chec"):
        load_checkpoint(tmp_path / "ck.pt", wider)
    _assert_same_state(wider.state_dict(), before)  # untouched

    class Extra(Tiny):
        def __init__(self):
            super().__init__()
            self.head = nn.Parameter(torch.zeros(2))

    with pytest.raises(CheckpointError, match=r"'head' \(2,\) is missing from the checkpoint.*width"):
        load_checkpoint(tmp_path / "ck.pt", Extra())
    ckpt = read_checkpoint(tmp_path / "ck.pt")
    ckpt["model"]["bias"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="1 parameter\\(s\\) the model lacks, first 'bias'"):
        apply_checkpoint(ckpt, Tiny())


def test_error_wrong_format_version_and_missing_optimizer(tmp_path):
    model, _ = _trained()
    save_checkpoint(model, None, 1, tmp_path / "ck.pt")
    fresh, fresh_opt = _trained(steps=0)
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load_checkpoint(tmp_path / "ck.pt", fresh, fresh_opt)
    torch.save({"format_version": 99, "model": {}, "iteration": 0}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(tmp_path / "future.pt", fresh)


def test_save_rejects_unloadable_values_and_clashing_keys(tmp_path):
    model, opt = _trained()
    with pytest.raises(TypeError, match=r"checkpoint\['note'\]\[0\] is a ndarray"):
        save_checkpoint(model, opt, 1, tmp_path / "ck.pt", note=[np.zeros(1)])
    with pytest.raises(ValueError, match="clash"):
        save_checkpoint(model, opt, 1, tmp_path / "ck.pt", format_version=2)
    assert not (tmp_path / "ck.pt").exists()


def test_omegaconf_config_is_stored_as_plain_dict(tmp_path):
    from omegaconf import OmegaConf

    model, opt = _trained()
    cfg = OmegaConf.create({"optim": {"lr": 1e-3, "max": "${optim.lr}"}})
    save_checkpoint(model, opt, 1, tmp_path / "ck.pt", config=cfg)
    assert read_checkpoint(tmp_path / "ck.pt")["config"] == {"optim": {"lr": 1e-3, "max": 1e-3}}
