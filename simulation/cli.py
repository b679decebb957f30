"""axilla-simulate: make a phantom cohort and run a whole federation on one machine."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from client.node_site import SITES_RUN_CONFIG, discover_sites
from models.run_config import RunConfigError, load_run_config_file, parse_assignments
from simulation.public.adapters import ADAPTERS
from simulation.public.partition import PARTITIONS, PartitionOptions

DEMO_DIR = Path("phantom/demo")
PRESET_NAMES = ("demo", "tiny", "hetero", "hetero-tiny")  # simulation.phantom.PRESETS, named here so --help needs no phantom import


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="axilla-simulate",
        description="Without a command: run the demo federation on the phantom cohort in ./phantom/demo (made if missing).",
    )
    run_opts = argparse.ArgumentParser(add_help=False)
    run_opts.add_argument("--run-config", type=Path, help="TOML file of run config overrides (flat kebab-case keys)")
    run_opts.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE", help="one run config override")
    run_opts.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run directories go (default ./runs)")
    run_opts.add_argument("--client-cpus", type=float, default=None, help="CPUs per simulated site (default: all)")
    sub = parser.add_subparsers(dest="command")
    make = sub.add_parser("make-phantom", help="write a synthetic multi-hospital cohort")
    make.add_argument("--out", type=Path, required=True)
    make.add_argument(
        "--preset", default="demo", choices=PRESET_NAMES,
        help="demo: 3 training hospitals + 1 external; tiny: the test-size federation; hetero: 7 small training hospitals (40-120 cases, "
        "prevalence 15-60%%, strong scanner shift, hospital_outlier the most shifted) + 1 external; hetero-tiny: hetero at test size "
        "(hetero presets: --modality image only)",
    )  # fmt: skip
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--modality", choices=("image", "cine", "multimodal"), default="image", help="image: one still per case; cine: a probe sweep (multi-frame DICOM or frame folder) per case; multimodal: the still plus an H&E micrograph and a CC + MLO mammogram per case")
    make.add_argument("--dp-epsilon", type=float, default=0.0, metavar="EPS", help="every training site trains only with DP-SGD at this target epsilon (delta 1e-5)")
    run = sub.add_parser("run", parents=[run_opts], help="run a federation on a folder of sites")
    run.add_argument(
        "--sites", type=Path, required=True,
        help="folder with one <site>/site.yaml per site; its run-config.toml, if any (written by prepare), is applied before --run-config and --set",
    )  # fmt: skip
    prep = sub.add_parser(
        "prepare", help="turn downloaded public datasets into site folders (docs/public-data.md)",
        description="Read public datasets in their published layouts (nothing is downloaded or copied), partition their cases into sites "
        "and write DIR/<site>/site.yaml + manifest.csv for `axilla-simulate run --sites DIR`.",
    )  # fmt: skip
    prep.add_argument("--dataset", action="append", default=[], metavar="NAME=PATH", help="a dataset and the folder it was unzipped into (repeat); NAME: " + ", ".join(ADAPTERS))
    prep.add_argument("--partition", choices=PARTITIONS, default="center", help="center: one site per natural center (dataset, or BUS-BRA's scanner); dirichlet: label skew; quantity: size skew")
    prep.add_argument("--external", default="", metavar="NAME", help="a dataset, center or site held out as the external test site (never trains)")
    prep.add_argument("--num-sites", type=int, default=None, help="training sites of a dirichlet or quantity partition (default 3)")
    prep.add_argument("--alpha", type=float, default=None, help="Dirichlet concentration of a dirichlet or quantity partition; smaller is more skewed (default 0.5)")
    prep.add_argument("--min-cases", type=int, default=None, help="fewest cases per training site of a dirichlet or quantity partition (default 10)")
    prep.add_argument("--seed", type=int, default=None, help="seed of a dirichlet or quantity partition (default 0)")
    prep.add_argument("--out", type=Path, required=True, help="the folder to write the site folders into")
    comp = sub.add_parser(
        "compare", help="run several strategies or run-config variants on the same sites and seeds, with the pooled and local-only baselines, and tabulate them",
        description="Each variant once per seed (the first also trains the pooled and local-only baselines), in parallel; "
        "writes OUT/comparison.json, comparison.md and comparison.html, and each run under OUT/runs/.",
    )  # fmt: skip
    comp.add_argument("--sites", type=Path, required=True, help="folder with one <site>/site.yaml per site (its run-config.toml, if any, applies first)")
    comp.add_argument(
        "--strategies", required=True,
        help="comma list of variants: a run config 'strategy' name, or a run-config TOML file applied over --run-config/--set for its runs "
        "(labelled by its stem), e.g. fedavg,experiments/strategies/fedprox.toml",
    )  # fmt: skip
    comp.add_argument("--seeds", default="0", help="comma list of seeds (default 0)")
    comp.add_argument("--run-config", type=Path, help="TOML file of run config overrides shared by every run")
    comp.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE", help="one run config override shared by every run")
    comp.add_argument("--out", type=Path, default=Path("comparison"), help="where the table and the runs go (default ./comparison)")
    comp.add_argument("--jobs", type=int, default=None, help="runs at a time (default: from the CPU count and memory); torch threads per run = cores // jobs")
    comp.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    demo = sub.add_parser("demo", parents=[run_opts], help="the default: the demo phantom federation")
    demo.add_argument("--seed", type=int, default=0, help="phantom seed")
    return parser


def _log_to_console() -> None:
    """Show axilla's own INFO messages (Flower configures its own logger)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("axilla")
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _prepare(args: argparse.Namespace) -> int:
    """``prepare``: adapters, partition, site folders; prints each site and the command that runs them."""
    from simulation.public.cohort import PublicDataError  # noqa: PLC0415
    from simulation.public.prepare import parse_dataset_arg, prepare  # noqa: PLC0415

    skew = {"num_sites": args.num_sites, "alpha": args.alpha, "min_cases": args.min_cases, "seed": args.seed}
    given = [f"--{key.replace('_', '-')}" for key, value in skew.items() if value is not None]
    if args.partition == "center" and given:
        print(f"axilla-simulate prepare: {', '.join(given)} apply to --partition dirichlet or quantity, not center", file=sys.stderr)
        return 2
    options = PartitionOptions(args.partition, args.external, **{k: v for k, v in skew.items() if v is not None})
    try:
        plans, record = prepare([parse_dataset_arg(d) for d in args.dataset], options, args.out)
    except PublicDataError as err:
        print(f"axilla-simulate prepare: {err}", file=sys.stderr)
        return 1
    for name, facts in record["datasets"].items():  # type: ignore[union-attr]
        for note in facts["notes"]:
            print(f"{name}: {note}")
    for plan in plans:
        facts = record["sites"][plan.name]  # type: ignore[index]
        print(f"{plan.name} ({plan.role}): {facts['cases']} cases, {facts['images']} images, {facts['positive']} positive")
    endpoint = record["endpoint"]
    print(f"endpoint: {endpoint['name']} ({endpoint['positive']} vs {endpoint['negative']})")  # type: ignore[index]
    print(f"run it: axilla-simulate run --sites {args.out}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    """``compare``: validate the plan (bad variants named), print it, run it, print where the table is."""
    from simulation.compare import CompareError, default_jobs, describe_plan, plan_runs, run_comparison, subprocess_runner, threads_per_job  # noqa: PLC0415

    try:
        sites_config = args.sites / SITES_RUN_CONFIG
        overrides = load_run_config_file(sites_config) if sites_config.is_file() else {}
        overrides |= load_run_config_file(args.run_config) if args.run_config else {}
        overrides |= parse_assignments(args.assignments)
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        if not discover_sites(args.sites):
            raise CompareError(f"{args.sites} holds no site folder (expected <dir>/<site>/site.yaml)")
        runs = plan_runs([s.strip() for s in args.strategies.split(",") if s.strip()], seeds, overrides)
    except (RunConfigError, CompareError, ValueError) as err:
        print(f"axilla-simulate compare: {err}", file=sys.stderr)
        return 2
    jobs = max(1, min(args.jobs or default_jobs(), len(runs)))
    threads = threads_per_job(jobs)
    print("\n".join(describe_plan(runs, jobs, threads)))
    if args.dry_run:
        return 0
    out = args.out.resolve()
    table = run_comparison(args.sites.resolve(), runs, out, subprocess_runner(args.sites.resolve(), out / "runs"), jobs, threads)
    failed = [r for r in table["runs"] if r["status"] == "failed"]
    for r in failed:
        print(f"failed: {r['strategy']} seed {r['seed']}: {r['error']}", file=sys.stderr)
    print(out / "comparison.html")
    return 1 if len(failed) == len(table["runs"]) else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; the last line printed by a run is its run directory."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["demo", *argv]
    args = _parser().parse_args(argv)
    _log_to_console()
    if args.command == "prepare":
        return _prepare(args)
    if args.command == "compare":
        return _compare(args)
    from simulation.phantom import make_phantom

    if args.command == "make-phantom":
        try:
            summary = make_phantom(args.out, args.preset, args.seed, modality=args.modality)
        except ValueError as err:
            print(f"axilla-simulate make-phantom: {err}", file=sys.stderr)
            return 2
        if args.dp_epsilon:
            from simulation.phantom.writer import require_dp  # noqa: PLC0415

            print(f"DP-SGD at target epsilon {args.dp_epsilon:g} (delta 1e-5) for: {', '.join(require_dp(args.out, args.dp_epsilon))}")
        for site in summary.sites:
            print(f"{site}: {summary.n_cases[site]} cases, {summary.n_positive[site]} positive, Bayes AUC {summary.bayes_auc[site]:.3f}")
        print(summary.out)
        return 0
    try:
        sites_config = args.sites / SITES_RUN_CONFIG if args.command == "run" else None
        overrides = load_run_config_file(sites_config) if sites_config is not None and sites_config.is_file() else {}
        overrides |= load_run_config_file(args.run_config) if args.run_config else {}
        overrides |= parse_assignments(args.assignments)
    except RunConfigError as err:
        print(f"axilla-simulate: {err}", file=sys.stderr)
        return 2
    sites = args.sites if args.command == "run" else DEMO_DIR
    if args.command == "demo" and not (sites / "_truth" / "phantom.json").exists():
        make_phantom(sites, "demo", args.seed)
    from server.federation import FederationError
    from simulation.runner import SimulationError, simulate

    try:
        run_dir = simulate(sites, overrides, args.runs_dir, args.client_cpus)
    except (SimulationError, RunConfigError, FederationError) as err:
        print(f"axilla-simulate: {err}", file=sys.stderr)
        return 1
    print(run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
