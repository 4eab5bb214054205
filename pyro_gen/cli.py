"""The ``pyro-gen`` command: list, fit, evaluate, sample, compare, diagnose, reproduce.

Argument parsing only: the flags of ``fit FAMILY`` are generated from the settings
dataclasses (:mod:`pyro_gen.config`: run, training, the family's trainer) and the family's
own config dataclass, so every setting is spelled once and a flag a family cannot honour is
never offered. Work happens in :mod:`pyro_gen.runs`, :mod:`pyro_gen.experiments` and
:mod:`pyro_gen.diagnose`, imported when a command runs: ``--help`` and ``list`` load no
torch. Every error a user can cause is printed as one line (``pyro-gen: error: ...``) with
exit status 2; ``--debug`` shows the traceback instead.

``pyro-gen fit --model FILE.py:NAME [flags]`` is the spelling of ``pyro-gen fit user --target
FILE.py:NAME [flags]``: the user's own program as the ``user`` family
(:mod:`pyro_gen.families.user`), registered here when no entry point did.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import config as cfg
from .registry import families

USER_ERRORS = (
    ValueError,
    OSError,  # a missing, unreadable or unwritable file (disk full included)
    KeyError,
    FloatingPointError,
)
PREFIX = {"run": "run__", "train": "train__", "trainer": "trainer__", "model": "model__"}


def family_sections(family) -> dict[str, tuple[type | None, list[str] | None]]:
    """Return, per settings section of ``family``, its dataclass and the fields offered as flags."""
    from .runs import section_classes, trainer_fields

    classes = section_classes(family)
    return {
        "run": (classes["run"], None),
        "train": (classes["train"], None),
        "trainer": (classes["trainer"], trainer_fields(family)),
        "model": (classes["model"], None),
    }


def add_family_arguments(parser: argparse.ArgumentParser, family) -> None:
    """Add every flag of ``pyro-gen fit FAMILY``: run, training, trainer and model settings."""
    defaults = dict(family.defaults)
    titles = {
        "run": "run",
        "train": "training (the engine)",
        "trainer": f"{family.trainer} trainer",
        "model": f"{family.name} model",
    }
    for section, (cls, only) in family_sections(family).items():
        group = parser.add_argument_group(titles[section])
        if cls is None:
            if section == "model" and family.add_arguments is not None:
                family.add_arguments(group)
            continue
        cfg.add_arguments(group, cls, defaults, dest_prefix=PREFIX[section], only=only)


def model_spelling(argv: Sequence[str]) -> list[str]:
    """Return ``argv`` with ``fit --model TARGET ...`` rewritten as ``fit user --target TARGET ...``.

    Other command lines are returned unchanged (``compare estimators --model`` is that
    target's own flag).
    """
    argv = list(argv)
    head = 0
    while head < len(argv) and argv[head] == "--debug":
        head += 1
    if head >= len(argv) or argv[head] != "fit":
        return argv
    rest = argv[head + 1 :]
    for i, token in enumerate(rest):
        if token == "--model" or token.startswith("--model="):
            if token == "--model":
                if i + 1 >= len(rest):
                    return argv  # argparse says the value is missing
                target, tail = rest[i + 1], rest[i + 2 :]
            else:
                target, tail = token.split("=", 1)[1], rest[i + 1 :]
            families_given = [t for t in rest[:i] if not t.startswith("-")]
            if families_given:
                return argv  # a family named too: let its parser refuse --model
            return [*argv[: head + 1], "user", "--target", target, *rest[:i], *tail]
    return argv


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``pyro-gen`` command."""
    from .experiments import comparisons
    from .families.user import ensure_registered

    ensure_registered()

    parser = argparse.ArgumentParser(prog="pyro-gen", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list registered model families and estimators")
    fit_p = sub.add_parser(
        "fit",
        help="fit a model family (or your program: fit --model FILE.py:NAME) and write a run folder",
        description="Fit a registered family (pyro-gen fit FAMILY --help lists its flags) or your own "
        "probabilistic program: pyro-gen fit --model FILE.py:NAME [flags] is pyro-gen fit user --target "
        "FILE.py:NAME [flags] (see pyro-gen fit user --help).",
    )
    fit_p.add_argument(
        "--config", default=None, help="re-run a run folder's config.json (other flags are ignored but --out)"
    )
    fit_p.add_argument("--out", dest="config_out", default=None, help="with --config: the folder to write")
    fit_p.add_argument(
        "--overwrite", dest="config_overwrite", action="store_true", help="with --config: replace that run"
    )
    fam_sub = fit_p.add_subparsers(dest="family", required=False)
    for name, fam in families().items():
        add_family_arguments(fam_sub.add_parser(name, help=fam.summary, description=fam.summary), fam)
    cp = sub.add_parser("compare", help="compare methods or families and write one report")
    comp_sub = cp.add_subparsers(dest="target", required=True)
    for name, comp in comparisons().items():
        comp.add_arguments(comp_sub.add_parser(name, help=comp.summary))
    ep = sub.add_parser(
        "evaluate",
        help="evaluate a run folder's model on its test set (resumable)",
        description="Evaluate a run folder's trained model on the first N test points with k importance "
        "samples (or its exact likelihood, or sample metrics) and write the numbers into its metrics.json. "
        "Progress is saved after every block of points: run the same command again to continue an "
        "interrupted evaluation.",
    )
    ep.add_argument("run_dir", help="a run folder written by `pyro-gen fit`")
    ep.add_argument("--k", type=int, default=None, help="importance samples per point (default: the run's k)")
    ep.add_argument(
        "--points",
        type=int,
        default=None,
        help="evaluate the first N test points (default: all, or the run's)",
    )
    ep.add_argument(
        "--device",
        default=None,
        help="cpu | cuda | cuda:N | auto (default: that of an unfinished evaluation, else cpu)",
    )
    ep.add_argument("--seed", type=int, default=None, help="seed of the evaluation (default: the run's seed)")
    ep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp = sub.add_parser("sample", help="draw samples from a run folder's model")
    sp.add_argument("run_dir")
    sp.add_argument("--num", type=int, default=64)
    sp.add_argument("--out", required=True, help="output .npy file (a PNG is written beside it)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--label", type=int, default=None, help="the class to draw (cvae and m2 runs)")
    dp = sub.add_parser("diagnose", help="diagnose a run's posterior (ArviZ, k-hat)")
    dp.add_argument("run_dir", help="a run folder written by `pyro-gen fit`")
    dp.add_argument("--num-points", type=int, default=200, help="test points to diagnose")
    dp.add_argument("--num-samples", type=int, default=200, help="guide draws per chain in the InferenceData")
    dp.add_argument("--num-chains", type=int, default=2, help="chains of guide draws")
    dp.add_argument(
        "--k", type=int, default=1000, help="importance samples for k-hat and the IS log-likelihood"
    )
    dp.add_argument("--gap-points", type=int, default=16, help="points for the amortization gap (0 skips it)")
    dp.add_argument("--gap-steps", type=int, default=300, help="optimizer steps per-point guide")
    dp.add_argument("--seed", type=int, default=0)
    dp.add_argument("--no-progress", action="store_true")
    add_reproduce_parser(sub)
    return parser


def add_reproduce_parser(sub) -> argparse.ArgumentParser:
    """Add ``pyro-gen reproduce`` to the subcommands ``sub``; return its parser."""
    from .experiments.reproduce import BUDGETS, reproductions

    rp = sub.add_parser(
        "reproduce",
        help="reproduce a published table (each row a run folder; resumable)",
        description="Run a published experiment with the paper's architecture, data protocol and evaluation, "
        "and write OUT/table.md and OUT/table.json (published, ours, difference, epochs, times, hardware) "
        "with one run folder per row under OUT/rows. A killed reproduction continues with --resume.",
    )
    rp.add_argument("name", nargs="?", choices=sorted(reproductions()), help="the table to reproduce")
    rp.add_argument("--list", action="store_true", help="list the reproductions, their rows and budgets")
    rp.add_argument(
        "--budget",
        default="quick",
        choices=BUDGETS,
        help="quick: about an hour per row on a 2-core CPU; paper: the published protocol; "
        "smoke: a few steps, for the tests (default: quick)",
    )
    rp.add_argument("--device", default=None, help="cpu | cuda | cuda:N | auto (default: cpu)")
    rp.add_argument("--out", default=None, help="the table's folder (default: runs/reproduce/NAME-BUDGET)")
    rp.add_argument(
        "--data", default=None, help="mnist:PATH, the folder of the IDX files (default: $PYRO_GEN_MNIST)"
    )
    rp.add_argument("--resume", action="store_true", help="continue the table in --out")
    rp.add_argument("--rows", default=None, help="run only these rows, comma-separated (see --list)")
    rp.add_argument("--no-progress", action="store_true", help="no progress bars")
    return rp


def _init_distributed(device: str | None) -> bool:
    """Join the process group when started by ``torchrun`` (``WORLD_SIZE`` > 1).

    Returns True when this call created the group (the caller then leaves it with
    :func:`_leave_distributed`), False when there is no group or it existed already.
    """
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    use_cuda = device not in (None, "cpu") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return True


def _leave_distributed() -> None:
    """Wait for every rank, then destroy the process group before the interpreter exits.

    A gloo group whose worker threads outlive the interpreter aborts the process at exit
    (``terminate called without an active exception``), so every rank leaves it explicitly.
    """
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def plan_from_args(args: argparse.Namespace):
    """Return the :class:`~pyro_gen.runs.RunPlan` of a parsed ``pyro-gen fit FAMILY`` command line."""
    from .runs import plan_run
    from .runs.plan import family_named

    family = family_named(args.family)
    sections = {}
    for section, (cls, _) in family_sections(family).items():
        if cls is None:
            if section == "model" and family.add_arguments is not None:
                known = {d for d in vars(args) if "__" in d} | {"command", "family", "debug", "config"}
                known |= {"config_out", "config_overwrite"}
                sections[section] = {k: v for k, v in vars(args).items() if k not in known}
            continue
        sections[section] = cfg.explicit(args, cls, dest_prefix=PREFIX[section])
    return plan_run(family.name, **sections)


def _cmd_fit(args: argparse.Namespace) -> int:
    from .runs import plan_from_dict, read_config, run_plan

    if args.config is not None:
        if args.family is not None:
            raise ValueError("give either --config RUN/config.json or a family with its flags, not both")
        plan = plan_from_dict(read_config(args.config))
        plan.run.resume = False
        plan.run.overwrite = args.config_overwrite
        out = args.config_out or plan.run.out
    elif args.family is None:
        raise ValueError("name a model family (see `pyro-gen list`) or give --config RUN/config.json")
    else:
        plan = plan_from_args(args)
        out = plan.run.out
    joined = _init_distributed(plan.train.device)
    try:
        metrics = run_plan(plan, out=out, progress=plan.train.progress)
    finally:
        if joined:
            _leave_distributed()
    if metrics is None:  # a rank other than 0 under torchrun: rank 0 reports
        return 0
    out = out or f"runs/{plan.family.name}-{plan.run.data.split(':')[0]}"
    skip = {"steps", "seed", "epochs", "k", "eval_seconds", "threads", "train_eval_seconds", "eval_seed"}
    skip |= {"eval_points", "block_points", "block_samples", "block_bytes"}
    print(f"{plan.family.name} on {plan.run.data}: {metrics['steps']} steps")
    for key, value in metrics.items():  # every numeric metric the family reported
        if key not in skip and isinstance(value, int | float) and not isinstance(value, bool):
            print(f"  {key:<24} {value:.4f}")
    for note in metrics.get("notes", []):
        print(f"note: {note}")
    print(f"report: {out}/metrics.json, figures: {', '.join(metrics['figures'])}")
    if (Path(out) / "index.html").is_file():
        print(f"page: {out}/index.html")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .runs import evaluate_run, read_config

    if args.k is not None and read_config(args.run_dir).get("family") == "user":
        raise ValueError(
            "--k: a user program's run is scored with the --eval-samples it was fitted with "
            "(fit again with --eval-samples to change them)"
        )

    metrics = evaluate_run(
        args.run_dir,
        k=args.k,
        points=args.points,
        device=args.device,
        seed=args.seed,
        progress=not args.no_progress,
    )
    at = f" at k={metrics['k']}" if metrics.get("likelihood_kind") == "importance" else ""
    print(
        f"{metrics.get('model', 'run')} in {args.run_dir}: {metrics['eval_points']} test points{at}, "
        f"{metrics['eval_seconds']:.1f} s"
    )
    for key in ("test_log_likelihood", "test_bits_per_dim", "test_elbo", "train_elbo"):
        if isinstance(metrics.get(key), int | float):
            print(f"  {key:<24} {metrics[key]:.4f}")
    print(f"report: {args.run_dir}/metrics.json")
    return 0


def _cmd_list(_: argparse.Namespace) -> int:
    from .inference.catalog import BUILTIN_ESTIMATORS

    print("model families:")
    for name, fam in families().items():
        print(f"  {name:<12} {fam.summary}")
    print("estimators:")
    for name, summary in BUILTIN_ESTIMATORS.items():
        print(f"  {name:<15} {summary}")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    if args.list:
        from .experiments.reproduce import list_lines

        print("\n".join(list_lines()))
        return 0
    if args.name is None:
        raise ValueError("name a reproduction (see `pyro-gen reproduce --list`)")
    from .experiments.reproduce.driver import reproduce

    rows = [r.strip() for r in args.rows.split(",") if r.strip()] if args.rows else None
    table = reproduce(
        args.name,
        budget=args.budget,
        out=args.out,
        data=args.data,
        device=args.device,
        resume=args.resume,
        rows=rows,
        progress=not args.no_progress,
    )
    failed = [e["name"] for e in table["rows"] if str(e.get("status", "")).startswith("failed")]
    done = sum(e.get("status") == "done" for e in table["rows"])
    print(
        f"{args.name} ({args.budget}): {done} of {len(table['rows'])} rows done"
        + (f", failed: {', '.join(failed)} (rerun with --resume)" if failed else "")
    )
    return 1 if failed else 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from .runs import sample_run

    written = sample_run(args.run_dir, args.num, args.out, seed=args.seed, label=args.label)
    print(" ".join(f"{k}: {v}" for k, v in written.items()))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .experiments import comparisons

    return comparisons()[args.target].run(args)


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from .diagnose import cmd_diagnose

    return cmd_diagnose(args)


COMMANDS = {
    "fit": _cmd_fit,
    "evaluate": _cmd_evaluate,
    "list": _cmd_list,
    "sample": _cmd_sample,
    "compare": _cmd_compare,
    "diagnose": _cmd_diagnose,
    "reproduce": _cmd_reproduce,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pyro-gen`` command line; return the exit status (0 ok, 2 user error)."""
    parser = build_parser()
    args = parser.parse_args(model_spelling(sys.argv[1:] if argv is None else argv))
    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as e:
        if args.debug:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"pyro-gen: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
