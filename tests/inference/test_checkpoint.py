"""Checkpoint files: a failed write is one line and leaves the previous checkpoint; a bad file is named."""

import errno
import pickle
import re

import pytest
import torch

from pyro_gen.inference import load_checkpoint, save_checkpoint
from pyro_gen.inference.checkpoint import CheckpointWriteError

STATE = {
    "module_state": {"w": torch.arange(6.0).reshape(2, 3)},
    "optimizer_state": {},
    "param_store": {},
    "rng": {},
    "loop": {"step": 3},
}
TORCH_SHORT_WRITE = "[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"


def _failing_save(exc):
    """A torch.save that writes part of the file and then raises ``exc``."""

    def save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial zip archive")
        f.flush()
        raise exc

    return save


def _leftovers(folder, keep):
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (
            RuntimeError(TORCH_SHORT_WRITE),
            r"the file came out short \(unexpected pos 64 vs 0\): is the disk full\?",
        ),
        (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    ],
    ids=["torch-writer", "disk-full"],
)
def test_failed_write_is_one_line_and_keeps_the_old_checkpoint(tmp_path, monkeypatch, exc, reason):
    path = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint(STATE, path)
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _failing_save(exc))
    with pytest.raises(CheckpointWriteError) as info:
        save_checkpoint({**STATE, "loop": {"step": 4}}, path)
    err = info.value
    assert isinstance(err, OSError)
    msg = str(err)
    assert "\n" not in msg
    assert msg.startswith(f"could not write checkpoint {path} (")
    assert msg.endswith("); the previous checkpoint is intact")
    assert re.search(reason, msg), msg
    assert path.read_bytes() == before  # byte-identical
    assert _leftovers(path.parent, {"checkpoint.pt"}) == []  # no temporary file left
    monkeypatch.undo()
    assert load_checkpoint(path)["loop"]["step"] == 3


def test_disk_full_inside_torch_writer_reports_the_system_cause(tmp_path, monkeypatch):
    """Torch's zip writer turns a failed file write into "unexpected pos": the OSError behind it is named."""

    def save(obj, f, *args, **kwargs):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError(TORCH_SHORT_WRITE)  # noqa: B904 (as torch does: context, no cause)

    path = tmp_path / "checkpoint.pt"
    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(CheckpointWriteError) as info:
        save_checkpoint(STATE, path)
    assert str(info.value) == (
        f"could not write checkpoint {path} (No space left on device); no checkpoint was written"
    )
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []
    copy = pickle.loads(pickle.dumps(info.value))
    assert str(copy) == str(info.value)


def test_unwritable_folder_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointWriteError, match=r"could not write checkpoint .*file/c\.pt \("):
        save_checkpoint(STATE, blocker / "c.pt")


def test_interrupt_removes_the_temporary_file_and_propagates(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(STATE, path)
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _failing_save(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(STATE, path)
    assert path.read_bytes() == before and _leftovers(tmp_path, {"checkpoint.pt"}) == []


@pytest.mark.parametrize("keep", [0, 10, 200, -30], ids=["empty", "10-bytes", "200-bytes", "last-30-cut"])
def test_truncated_checkpoint_is_named_on_load(tmp_path, keep):
    good = tmp_path / "good.pt"
    save_checkpoint(STATE, good)
    raw = good.read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(raw[:keep])
    with pytest.raises(ValueError, match=r"checkpoint .*bad\.pt is (empty|corrupt or truncated)") as info:
        load_checkpoint(bad)
    assert "\n" not in str(info.value)
    assert bad.read_bytes() == raw[:keep]  # never modified


def test_missing_and_foreign_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    other = tmp_path / "other.pt"
    torch.save({"hello": 1}, other)
    with pytest.raises(ValueError, match="other.pt is not a pyro-gen checkpoint"):
        load_checkpoint(other)
