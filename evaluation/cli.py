"""axilla-report: re-render report.json and report.md from a finished run directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evaluation.report import write_report


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``axilla-report RUN_DIR``."""
    parser = argparse.ArgumentParser(prog="axilla-report", description=__doc__)
    parser.add_argument("run_dir", type=Path, help="a run directory (holds config.json and metrics.jsonl)")
    args = parser.parse_args(argv)
    if not (args.run_dir / "config.json").is_file():
        print(f"axilla-report: {args.run_dir} is not a run directory (no config.json)", file=sys.stderr)
        return 2
    write_report(args.run_dir)
    print(args.run_dir / "report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
