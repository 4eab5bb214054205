"""`pyro-gen sample RUN --label K`: class-conditional draws, refused where no class exists."""

import numpy as np
import torch

from pyro_gen.cli import main
from pyro_gen.runs import load_run

TINY = ["--hidden", "8", "--latent-dim", "2", "--steps", "3", "--eval-points", "4", "--k", "2"]
TINY += ["--no-progress"]


def test_sample_label_draws_the_class_asked_for(tmp_path):
    out = tmp_path / "cvae"
    assert main(["fit", "cvae", *TINY, "--out", str(out)]) == 0
    npy = tmp_path / "three.npy"
    assert main(["sample", str(out), "--num", "5", "--label", "3", "--seed", "1", "--out", str(npy)]) == 0
    model, _ = load_run(out)
    torch.manual_seed(1)
    expected = model.sample(5, label=3).reshape(5, 8, 8).numpy()
    np.testing.assert_allclose(np.load(npy), expected, rtol=0, atol=1e-6)
    torch.manual_seed(1)
    other = model.sample(5, label=4).reshape(5, 8, 8).numpy()
    assert not np.allclose(other, expected)  # the label reaches the decoder
    assert main(["sample", str(out), "--num", "2", "--label", "10", "--out", str(tmp_path / "x.npy")]) == 2


def test_sample_label_is_refused_by_a_family_without_classes(tmp_path, capsys):
    out = tmp_path / "vae"
    assert main(["fit", "vae", *TINY, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["sample", str(out), "--num", "2", "--label", "1", "--out", str(tmp_path / "s.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["pyro-gen: error: --label: the vae family draws no class-conditional samples"]
    assert not (tmp_path / "s.npy").exists()
