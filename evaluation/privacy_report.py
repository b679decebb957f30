"""The report's differential-privacy section: per model and site, what DP-SGD spent, enough to recompute epsilon;
per model, what central DP (``central-dp``) guarantees.

Read from the training rows of ``metrics.jsonl`` (each DP-SGD round's ``dp_*`` metrics). Every
round's noise multiplier, sample rate and step count is listed, so a reviewer can feed them to
Opacus's RDP accountant (``RDPAccountant.history``) and get the same epsilon at the same delta.
Central DP's releases are the rounds a model aggregated (a training row ``ok``), over the sites
it trains at (every training row's site), with the run config's noise and clipping.
"""

from __future__ import annotations

from typing import Any

ACCOUNTANT = "rdp (Opacus RDPAccountant, default orders)"


def privacy_rows(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (model, site) that trained with DP-SGD, rounds in order."""
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for line in lines:
        metrics = line.get("metrics") or {}
        if line.get("split") == "train" and line.get("status") == "ok" and "dp_epsilon" in metrics:
            by_key.setdefault((line["model"], line["site"]), []).append({"round": line["round"], **metrics})
    out = []
    for (model, site), rounds in sorted(by_key.items()):
        rounds.sort(key=lambda r: r["round"])
        last = rounds[-1]
        out.append({
            "model": model, "site": site, "mechanism": "DP-SGD (per-case clipping, Gaussian noise, Poisson sampling)",
            "accountant": ACCOUNTANT, "epsilon": last["dp_epsilon"], "delta": last["dp_delta"],
            "lifetime_epsilon": last["dp_lifetime_epsilon"], "max_grad_norm": last["dp_max_grad_norm"],
            "steps": sum(int(r["dp_steps"]) for r in rounds),
            "rounds": [{"round": r["round"], "noise_multiplier": r["dp_noise_multiplier"], "sample_rate": r["dp_sample_rate"], "steps": int(r["dp_steps"])} for r in rounds],
        })  # fmt: skip
    return out


def central_rows(run: dict[str, Any], lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per model trained under central DP: its mechanism, settings, releases, epsilon and guarantee."""
    if run.get("central-dp", "off") == "off":
        return []
    from models.run_config import RunConfig  # noqa: PLC0415
    from strategies.central_dp import CentralDP  # noqa: PLC0415 (Flower's accountant: only for such runs)

    cfg = RunConfig.from_mapping(run)
    sites: dict[str, set[str]] = {}
    releases: dict[str, set[Any]] = {}
    for line in lines:
        if line.get("split") == "train" and line.get("round") != "final":
            sites.setdefault(line["model"], set()).add(line["site"])
            if line.get("status") == "ok":
                releases.setdefault(line["model"], set()).add(line["round"])
    out = []
    for model in sorted(sites):
        central = CentralDP.of(cfg, len(sites[model]))
        assert central is not None
        out.append({"model": model, **central.describe(len(releases.get(model, ())))})
    return out


def privacy_markdown(report: dict[str, Any]) -> list[str]:
    """The report's DP section in Markdown (nothing when no site trained with DP-SGD)."""
    rows = report.get("privacy", [])
    variant = report["run"].get("model_variant")
    out: list[str] = []
    if variant:
        out += ["", f"Network variant: {variant} ({report['run'].get('model_variant_why', '')})."]
    central = report.get("central_dp", [])
    if central:
        out += [
            "", "## Central differential privacy", "", f"Mechanism: {central[0]['mechanism']}; accountant: {central[0]['accountant']}.", "",
            "| model | epsilon | delta | rounds released | sites per round | noise multiplier | clipping norm | noise std |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]  # fmt: skip
        out += [
            f"| {c['model']} | {c['epsilon']:.3f} | {c['delta']:g} | {c['releases']} | {c['sites_per_round']} | {c['noise_multiplier']:g} | "
            f"{c['clipping_norm']:g} | {c['noise_std']:.4g} |"
            for c in central
        ]
        out += ["", f"Guarantee ({central[0]['model']}): {central[0]['guarantee']}."]
    if not rows:
        return out
    out += [
        "", "## Differential privacy (DP-SGD at the site)", "",
        f"Accountant: {ACCOUNTANT}. Per round: noise multiplier, sample rate, steps (report.json `privacy[].rounds`).", "",
        "| model | site | epsilon | delta | steps | noise multiplier | sample rate | max grad norm | site lifetime epsilon |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]  # fmt: skip
    for r in rows:
        sigmas = [x["noise_multiplier"] for x in r["rounds"]]
        sigma = f"{min(sigmas):.3f}" if min(sigmas) == max(sigmas) else f"{min(sigmas):.3f}-{max(sigmas):.3f}"
        out.append(
            f"| {r['model']} | {r['site']} | {r['epsilon']:.3f} | {r['delta']:g} | {r['steps']} | {sigma} | "
            f"{r['rounds'][-1]['sample_rate']:.4f} | {r['max_grad_norm']:g} | {r['lifetime_epsilon']:.3f} |"
        )
    return out
