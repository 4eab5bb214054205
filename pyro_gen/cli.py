"""The ``pyro-gen`` command: list, fit, sample (more verbs arrive with their families).

Every error a user can cause is printed as one line (``pyro-gen: error: ...``) with exit
status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .comparisons import comparisons
from .inference.estimators import estimator_names
from .registry import families, get_family

USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    PermissionError,
    KeyError,
    FloatingPointError,
)


def _add_training_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="digits", help="digits | mnist:PATH | moons | ring | grid")
    p.add_argument("--out", default=None, help="run folder (default runs/<family>-<data>)")
    p.add_argument("--seed", type=int, default=0)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--epochs", type=float, default=None, help="passes over the training data")
    g.add_argument("--steps", type=int, default=None, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sgd", "rmsprop", "adagrad"])
    p.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine", "exponential"])
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--estimator", default=None, help=f"ELBO estimator: {', '.join(estimator_names())}")
    p.add_argument("--num-particles", type=int, default=1)
    p.add_argument("--k", type=int, default=5000, help="importance samples for the test log-likelihood")
    p.add_argument("--binarize", default="dynamic", choices=["dynamic", "static", "none"])
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N | auto (default: cpu)")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``pyro-gen`` command."""
    parser = argparse.ArgumentParser(prog="pyro-gen", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list registered model families and estimators")
    fit_p = sub.add_parser("fit", help="fit a model family and write a run folder")
    fam_sub = fit_p.add_subparsers(dest="family", required=True)
    for name, fam in families().items():
        fp = fam_sub.add_parser(name, help=fam.summary)
        _add_training_args(fp)
        fam.add_arguments(fp)
    cp = sub.add_parser("compare", help="compare methods or families and write one report")
    comp_sub = cp.add_subparsers(dest="target", required=True)
    for name, comp in comparisons().items():
        comp.add_arguments(comp_sub.add_parser(name, help=comp.summary))
    sp = sub.add_parser("sample", help="draw samples from a run folder's model")
    sp.add_argument("run_dir")
    sp.add_argument("--num", type=int, default=64)
    sp.add_argument("--out", required=True, help="output .npy file (a PNG is written beside it)")
    sp.add_argument("--seed", type=int, default=0)
    from .diagnostics.command import add_arguments as add_diagnose_arguments

    add_diagnose_arguments(sub.add_parser("diagnose", help="diagnose a run's posterior (ArviZ, k-hat)"))
    return parser


_COMMON = {
    "data",
    "out",
    "seed",
    "epochs",
    "steps",
    "batch_size",
    "lr",
    "optimizer",
    "lr_schedule",
    "warmup_steps",
    "estimator",
    "num_particles",
    "k",
    "binarize",
    "resume",
    "no_progress",
    "family",
    "command",
    "debug",
    "device",
}


def _init_distributed(device: str | None) -> None:
    """Join the process group when started by ``torchrun`` (``WORLD_SIZE`` > 1)."""
    import os

    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return
    use_cuda = device not in (None, "cpu") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")


def _cmd_fit(args: argparse.Namespace) -> int:
    from .runs import run_fit

    family = get_family(args.family)
    _init_distributed(args.device)
    if args.steps is not None:
        args.epochs = None  # --steps wins over a family's default --epochs
    if args.epochs is None and args.steps is None:
        args.epochs = 10
    options = {k: v for k, v in vars(args).items() if k not in _COMMON}
    out = args.out or f"runs/{family.name}-{args.data.split(':')[0]}"
    metrics = run_fit(
        family.name,
        args.data,
        out=out,
        options=options,
        seed=args.seed,
        epochs=args.epochs,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        lr_schedule=args.lr_schedule,
        warmup_steps=args.warmup_steps,
        estimator=args.estimator,
        num_particles=args.num_particles,
        k=args.k,
        binarize=None if args.binarize == "none" else args.binarize,
        resume=args.resume,
        progress=not args.no_progress,
        device=args.device,
    )
    if metrics is None:  # a rank other than 0 under torchrun: rank 0 reports
        return 0
    skip = {"steps", "seed", "epochs", "k", "eval_seconds"}
    print(f"{family.name} on {args.data}: {metrics['steps']} steps")
    for key, value in metrics.items():  # every numeric metric the family reported
        if key not in skip and isinstance(value, int | float) and not isinstance(value, bool):
            print(f"  {key:<24} {value:.4f}")
    print(f"report: {out}/metrics.json, figures: {', '.join(metrics['figures'])}")
    return 0


def _cmd_list(_: argparse.Namespace) -> int:
    print("model families:")
    for name, fam in families().items():
        print(f"  {name:<10} {fam.summary}")
    print("estimators:")
    print("  " + ", ".join(estimator_names()))
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from .runs import sample_run

    written = sample_run(args.run_dir, args.num, args.out, seed=args.seed)
    print(" ".join(f"{k}: {v}" for k, v in written.items()))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    return comparisons()[args.target].run(args)


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from .diagnostics.command import cmd_diagnose

    return cmd_diagnose(args)


COMMANDS = {
    "fit": _cmd_fit,
    "list": _cmd_list,
    "sample": _cmd_sample,
    "compare": _cmd_compare,
    "diagnose": _cmd_diagnose,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pyro-gen`` command line; return the exit status (0 ok, 2 user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
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
