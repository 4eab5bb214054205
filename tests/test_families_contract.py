"""The engine's contract, held for every gradient-trained family through its run folder.

For each family (tiny networks, a few steps): ``--steps 2n`` uninterrupted equals ``--steps
n`` then ``--resume`` to ``2n``, and a run killed after a checkpoint and resumed with the same
settings equals the uninterrupted run, history and parameters bit for bit; a divergence
raises ``TrainingDivergedError`` naming the step and leaves the last good checkpoint loadable;
``--device`` is honoured. And every flag the command line offers a family reaches the
object that uses it, or is refused with one clear error.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import tempfile
from pathlib import Path

import pytest
import torch

from pyro_gen.cli import PREFIX, build_parser, family_sections, plan_from_args
from pyro_gen.inference import TrainingDivergedError, load_checkpoint
from pyro_gen.registry import families
from pyro_gen.runs import plan_run, run_plan

# setup -> (data, model settings[, trainer settings]): the smallest runs that still exercise
# each trainer; a setup named FAMILY+WHAT is the family FAMILY with other settings
SETUPS = {
    "vae": ("digits", {"latent_dim": 2, "hidden": "8"}),
    "vae+remedies": (
        "digits",
        {"latent_dim": 2, "hidden": "8"},
        {"estimator": "reparam", "free_bits": 0.5, "kl_warmup_steps": 5, "kl_schedule": "linear"},
    ),
    "dvae": ("digits", {"num_latents": 3, "hidden": "8"}),
    "flow": ("moons", {"depth": 1, "hidden": "8"}),
    "gan": ("ring", {"hidden": "8"}),
    "made": ("digits", {"hidden": "16"}),
    "pixelcnn": ("digits", {"channels": 4, "layers": 1}),
    "autoencoder": ("digits", {"code_dim": 2, "hidden": "8"}),
    "gmm": ("moons", {"method": "svi", "components": 2}),
    "ebm": ("moons", {"method": "pcd", "hidden": "8", "buffer_size": 64, "sgld_steps": 2}),
    "cvae": ("digits", {"latent_dim": 2, "hidden": "8"}),
    "m2": ("digits", {"latent_dim": 2, "hidden": "8", "labels": 20}),
    "user": ("moons", {"target": "USER_PROGRAM"}),
}
USER_PROGRAM = """
import pyro, pyro.distributions as dist, torch
from pyro_gen.models import data_plate

def model(x):
    loc = pyro.sample("loc", dist.Normal(torch.zeros(x.shape[1]), 10.0).to_event(1))
    scale = pyro.param("scale", torch.ones(x.shape[1]), constraint=dist.constraints.positive)
    with data_plate(x):
        pyro.sample("obs", dist.Normal(loc, scale).to_event(1), obs=x)

MODEL = model
"""


@functools.cache
def _user_target() -> str:
    """Write the user family's program once per session; return its ``FILE.py:NAME`` target."""
    folder = Path(tempfile.mkdtemp(prefix="pyro-gen-user-"))
    (folder / "contract_program.py").write_text(USER_PROGRAM)
    return f"{folder / 'contract_program.py'}:MODEL"


def _model_settings(settings: dict) -> dict:
    return {k: (_user_target() if v == "USER_PROGRAM" else v) for k, v in settings.items()}


TIMING = ("seconds", "cpu_seconds", "eval_seconds")


class Killed(Exception):
    """Stands for a process killed mid-run."""


def _plan(name, out, steps, resume=False, **train):
    data, model, *trainer = SETUPS[name]
    train = {"steps": steps, "batch_size": 64, "log_every": 1, "checkpoint_every": 2, **train}
    run = {"data": data, "out": str(out), "resume": resume}
    if name != "user":  # a user program is scored with its own --eval-samples, and refuses --k
        run["k"] = 5
    sections = {"run": run, "train": train, "model": _model_settings(model)}
    if trainer:
        sections["trainer"] = trainer[0]
    return plan_run(name.split("+")[0], **sections)


def _run(name, out, steps, resume=False, callbacks=(), **train):
    return run_plan(
        _plan(name, out, steps, resume, **train), out=out, progress=False, callbacks=callbacks, evaluate=False
    )


def _state(out):
    state = load_checkpoint(out / "checkpoint.pt")
    history = [{k: v for k, v in row.items() if k not in TIMING} for row in state["history"]]
    return state, history


def _assert_same(a, b):
    sa, ha = _state(a)
    sb, hb = _state(b)
    assert repr(ha) == repr(hb)  # (repr: NaN metrics compare equal)
    assert sa["loop"]["step"] == sb["loop"]["step"]
    for name, mod in sb["modules"].items():
        for key, value in mod.items():
            assert torch.equal(sa["modules"][name][key], value), (name, key)
    for key, value in sb["param_store"]["params"].items():
        assert torch.equal(sa["param_store"]["params"][key], value), key


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_steps_n_then_resume_to_2n_equals_2n(name, tmp_path):
    a, b = tmp_path / "split", tmp_path / "whole"
    # a schedule with a horizon (cosine, linear) depends on the total: hold it constant here
    _run(name, a, 3, lr_schedule="constant")
    _run(name, a, 6, resume=True, lr_schedule="constant")
    _run(name, b, 6, lr_schedule="constant")
    _assert_same(a, b)


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_killed_run_resumes_bit_for_bit_with_the_familys_own_schedule(name, tmp_path):
    a, b = tmp_path / "killed", tmp_path / "whole"

    def kill(info):
        if info.step == 5:  # after the checkpoint at step 4
            raise Killed

    with pytest.raises(Killed):
        _run(name, a, 8, callbacks=[kill])
    assert load_checkpoint(a / "checkpoint.pt")["loop"]["step"] == 4
    _run(name, a, 8, resume=True)
    _run(name, b, 8)
    _assert_same(a, b)


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_divergence_names_the_step_and_keeps_the_last_good_checkpoint(name, tmp_path):
    out = tmp_path / "run"

    def poison(info):
        if info.step == 3:  # after the checkpoint at step 2: caught before anything uses them
            with torch.no_grad():
                for module in info.objective.modules().values():
                    for p in module.parameters():
                        p.fill_(float("nan"))

    with pytest.raises(TrainingDivergedError, match=r"at step 3.*last good checkpoint"):
        _run(name, out, 6, callbacks=[poison])
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["loop"]["step"] == 2
    for mod in state["modules"].values():
        assert all(torch.isfinite(v).all() for v in mod.values() if v.is_floating_point())
    _run(name, out, 4, resume=True)  # the saved run continues from there
    assert load_checkpoint(out / "checkpoint.pt")["loop"]["step"] == 4


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_device_is_honoured(name, tmp_path):
    metrics = _run(name, tmp_path / "cpu", 2, device="cpu")
    assert metrics["device"] == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            _run(name, tmp_path / "cuda", 2, device="cuda")


# ------------------------------------------------------------------------------------------
# every generated flag reaches its consumer, or is refused
# ------------------------------------------------------------------------------------------


def _other_value(action: argparse.Action, default):
    """Return a valid value for ``action`` that differs from ``default`` (None: no such value)."""
    if action.choices:
        others = [c for c in action.choices if c != default]
        return others[0] if others else None
    if action.type is int:
        return (default or 1) + 1
    if action.type is float:
        return (default or 1.0) * 0.5
    return None


def _flag_values(family, section):
    """Yield ``(flag, field, value)`` for every flag of ``section`` with a different valid value."""
    cls, only = family_sections(family)[section]
    parser = build_parser()
    sub = (
        parser._subparsers._group_actions[0].choices["fit"]._subparsers._group_actions[0].choices[family.name]
    )
    defaults = {f.name: f.default for f in dataclasses.fields(cls)} | dict(family.defaults)
    for action in sub._actions:
        if not action.dest.startswith(PREFIX[section]):
            continue
        name = action.dest[len(PREFIX[section]) :]
        if isinstance(action, argparse._StoreConstAction):
            yield action.option_strings[0], name, action.const, []
            continue
        value = _other_value(action, defaults.get(name))
        if value is not None:
            yield action.option_strings[0], name, value, [str(value)]


def test_every_family_offers_only_flags_of_its_sections():
    for name, family in families().items():
        parser = build_parser()
        sub = parser._subparsers._group_actions[0].choices["fit"]._subparsers._group_actions[0].choices[name]
        dests = {a.dest for a in sub._actions if a.dest != "help"}
        expected = set()
        for section, (cls, only) in family_sections(family).items():
            if cls is None:
                continue
            expected |= {
                PREFIX[section] + f.name for f in dataclasses.fields(cls) if only is None or f.name in only
            }
        assert dests == expected, name


@pytest.mark.parametrize("name", sorted(families()))
def test_every_flag_reaches_the_plan(name):
    family = families()[name]
    for section in ("run", "train", "trainer", "model"):
        if family_sections(family)[section][0] is None:
            continue
        for flag, field, value, rest in _flag_values(family, section):
            needs = ["--target", _user_target()] if name == "user" and flag != "--target" else []
            argv = ["fit", name, *needs, flag, *rest]
            try:
                plan = plan_from_args(build_parser().parse_args(argv))
            except ValueError as e:  # refused: the message names the setting
                assert field.replace("_", "-") in str(e) or field in str(e), (argv, e)
                continue
            got = getattr(getattr(plan, section), field)
            if isinstance(value, float):
                assert math.isclose(got, value), (argv, got)
            elif not (field == "ema" and value == 0.0):
                assert got == value, (argv, got)


class _Captured(Exception):
    pass


@pytest.mark.parametrize("name", sorted(n for n in SETUPS if n != "gmm"))
def test_training_and_trainer_flags_reach_the_engine(name, tmp_path, monkeypatch):
    """Every training setting arrives in the engine's config, every trainer setting in the objective."""
    import pyro_gen.inference.engine as engine

    seen = {}

    def spy(objective, data, config, **kw):
        seen.update(objective=objective, config=config, kw=kw)
        raise _Captured

    monkeypatch.setattr(engine, "train", spy)
    family = families()[name.split("+")[0]]
    train = {
        "steps": 7,
        "batch_size": 32,
        "lr": 0.0123,
        "optimizer": "rmsprop",
        "lr_schedule": "exponential",
        "warmup_steps": 2,
        "lr_gamma": 0.9,
        "clip_norm": 3.0,
        "seed": 5,
        "device": "cpu",
        "threads": 1,
        "log_every": 3,
        "eval_every": 6,
        "checkpoint_every": 4,
        "sync_every": 2,
    }
    trainer = {}
    if family.trainer == "svi" and family.trainer_settings is None:
        trainer = {"estimator": "iwae", "num_particles": 3, "eval_particles": 2}
    if family.trainer == "adversarial":
        trainer = {"loss": "hinge", "d_steps": 2, "gp_weight": 1.0, "lr_d": 0.004, "beta1": 0.1, "ema": 0.9}
    data, model, *own = SETUPS[name]
    trainer = own[0] if own else trainer
    run = {"data": data, "out": str(tmp_path)}
    plan = plan_run(family.name, run=run, train=train, trainer=trainer, model=_model_settings(model))
    with pytest.raises(_Captured):
        run_plan(plan, out=tmp_path, progress=False)
    config = seen["config"]
    for key, value in train.items():
        assert getattr(config, key) == value, key
    objective = seen["objective"]
    if own:  # the remedies reach the objective as the plan's settings
        assert objective.remedies is plan.trainer
    elif "estimator" in trainer:
        assert objective.estimator == "iwae" and objective.elbo.num_particles == 3
        assert objective.eval_elbo.num_particles == 2
    if family.trainer == "adversarial":
        assert objective.settings == plan.trainer and objective.averaged is not None


def test_a_method_refuses_the_training_settings_it_cannot_honour(tmp_path):
    for flag, value in (("--lr", "0.1"), ("--batch-size", "7"), ("--optimizer", "sgd"), ("--clip-norm", "1")):
        argv = ["fit", "gmm", "--data", "moons", "--method", "em", flag, value, "--out", str(tmp_path)]
        with pytest.raises(ValueError, match=flag + ": not used by --method em"):
            plan_from_args(build_parser().parse_args(argv))  # refused when planned: nothing written
    assert not any(tmp_path.iterdir())
    ok = ["fit", "gmm", "--data", "moons", "--method", "svi", "--lr", "0.1", "--out", str(tmp_path)]
    assert plan_from_args(build_parser().parse_args(ok)).train.lr == 0.1  # SVI takes it


def test_a_family_without_trainer_settings_refuses_them():
    with pytest.raises(SystemExit):  # argparse: the flag does not exist for flows
        build_parser().parse_args(["fit", "flow", "--num-particles", "3"])
    with pytest.raises(ValueError, match="the flow family has no trainer settings"):
        plan_run("flow", trainer={"num_particles": 3})


def test_resume_rebuilds_the_run_from_its_config_and_refuses_a_changed_model(tmp_path):
    from pyro_gen.cli import main
    from pyro_gen.runs import read_config

    out = tmp_path / "run"
    base = ["fit", "vae", "--out", str(out), "--no-progress", "--k", "5"]
    assert main([*base, "--latent-dim", "2", "--hidden", "8", "--steps", "4"]) == 0
    # the README's resume line: no model flags, a new budget and learning rate
    assert (
        main(["fit", "vae", "--out", str(out), "--steps", "8", "--lr", "0.002", "--resume", "--no-progress"])
        == 0
    )
    config = read_config(out)
    assert config["model"]["latent_dim"] == 2 and config["train"]["steps"] == 8
    assert config["train"]["lr"] == 0.002 and load_checkpoint(out / "checkpoint.pt")["loop"]["step"] == 8
    before = (out / "checkpoint.pt").read_bytes()
    assert main([*base, "--latent-dim", "3", "--steps", "12", "--resume"]) == 2
    assert (out / "checkpoint.pt").read_bytes() == before  # nothing saved before is lost


def test_a_run_folder_is_never_overwritten_by_accident(tmp_path):
    from pyro_gen.cli import main

    out = tmp_path / "run"
    base = ["fit", "vae", "--out", str(out), "--no-progress", "--k", "5", "--hidden", "8"]
    assert main([*base, "--steps", "3", "--latent-dim", "2"]) == 0
    assert (out / "latent_manifold.png").exists()
    saved = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main([*base, "--steps", "5"]) == 2  # refused: the old run is untouched
    assert {p.name: p.read_bytes() for p in out.iterdir()} == saved
    assert main([*base, "--steps", "5", "--overwrite"]) == 0  # replaced, old figures gone
    assert load_checkpoint(out / "checkpoint.pt")["loop"]["step"] == 5
    assert not (out / "latent_manifold.png").exists()
    assert main(["fit", "--config", str(out / "config.json")]) == 2  # the same folder: refused
    assert main(["fit", "--config", str(out / "config.json"), "--overwrite"]) == 0
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main(["fit", "vae", "--out", str(a_file), "--steps", "1"]) == 2
    assert a_file.read_text() == "x"


def test_a_refused_start_leaves_nothing_that_blocks_the_corrected_command(tmp_path, capsys):
    from pyro_gen.cli import main

    out = tmp_path / "run"
    base = ["fit", "vae", "--out", str(out), "--no-progress", "--k", "5", "--hidden", "8", "--steps", "3"]
    # a bad estimator is refused when the run is planned: no folder at all
    assert main([*base, "--estimator", "iwae:x"]) == 2
    assert "--estimator: estimator 'iwae:x'" in capsys.readouterr().err and not out.exists()
    # a run stopped on its second step saved nothing but config.json: the corrected
    # command starts afresh without --overwrite
    assert main([*base, "--lr", "1e6"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pyro-gen: error: loss ran away at step 2") and "\n" not in err
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]
    assert main(base) == 0
    assert load_checkpoint(out / "checkpoint.pt")["loop"]["step"] == 3
    assert json.loads((out / "config.json").read_text())["train"]["lr"] == 1e-3


def test_sample_never_writes_over_the_runs_figures_and_shows_data_beside_samples(tmp_path):
    import matplotlib.image as mpimg

    from pyro_gen.cli import main

    out = tmp_path / "flow"
    assert main(["fit", "flow", "--data", "moons", "--depth", "1", "--hidden", "8", "--steps", "3",
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    before = (out / "samples.png").read_bytes()
    assert main(["sample", str(out), "--num", "50", "--out", str(out / "samples.npy")]) == 2
    assert (out / "samples.png").read_bytes() == before and not (out / "samples.npy").exists()
    assert main(["sample", str(out), "--num", "50", "--out", str(out / "drawn.npy")]) == 0
    assert mpimg.imread(out / "drawn.png").shape[-1] in (3, 4)
    assert main(["sample", str(out), "--num", "5", "--out", str(out)]) == 2  # a folder


def test_a_data_set_without_parameters_refuses_one():
    from pyro_gen.data import load_data

    for spec in ("digits:extra", "moons:1", "ring:x"):
        with pytest.raises(ValueError, match="takes no"):
            load_data(spec)
