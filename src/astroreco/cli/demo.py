"""``astroreco demo``: the README's main job, for every detector that exists."""

from __future__ import annotations

import time
from pathlib import Path

import click

from astroreco.cli.options import quiet_option, seed_option


def run_demo(out_dir="demo_output", *, n_per_line=10_000, seed=0, progress=True) -> dict:
    """Simulate, reconstruct (classical + shipped models), evaluate and report, per detector.

    Returns a dict detector -> metrics.
    """
    from astroreco.detectors.ecal import demo as ecal_demo
    from astroreco.detectors.ixpe import demo as ixpe_demo
    from astroreco.detectors.sky import demo as sky_demo
    from astroreco.detectors.tpc import demo as tpc_demo

    out = Path(out_dir)
    results = {}
    results["ixpe"] = ixpe_demo.run(out / "ixpe", n_per_line=n_per_line, seed=seed,
                                    progress=progress)
    results["tpc"] = tpc_demo.run(out / "tpc", n_events=max(100, n_per_line // 20), seed=seed,
                                  progress=progress)
    results["ecal"] = ecal_demo.run(out / "ecal", n_events=max(2000, 2 * n_per_line),
                                    seed=seed, progress=progress)
    results["sky"] = sky_demo.run(out / "sky", n_patches=max(20, n_per_line // 50), seed=seed,
                                  progress=progress)
    return results


@click.command()
@click.option("--out", "-o", default="demo_output", show_default=True, type=click.Path(),
              help="Output directory.")
@click.option("--n-per-line", type=click.IntRange(min=100), default=10_000, show_default=True,
              help="Events per energy line.")
@seed_option()
@quiet_option()
def demo(out, n_per_line, seed, quiet):
    """Small end-to-end run: simulate, reconstruct, evaluate, plots and an HTML report."""
    t0 = time.time()
    results = run_demo(out, n_per_line=n_per_line, seed=seed, progress=not quiet)
    metrics = results["ixpe"]
    click.echo(f"ixpe: {len(metrics['rows'])} metric rows -> {out}/ixpe/evaluation/report.html")
    for r in metrics["rows"]:
        if "mu" in r:
            click.echo(f"  {r['method']:8s} {r['energy_kev']:4.1f} keV  mu = {r['mu']:.3f} "
                       f"+- {r['mu_err']:.3f}  eps10 = {r['epsilon_10']:.3f}")
    click.echo(f"tpc: {out}/tpc/summary.json, tracks.png, evaluation_*/ (cosine distance, "
               "lower is better)")
    for r in results["tpc"]["rows"]:
        click.echo(f"  {r['set']:12s} contained {r['containment']:.0%} of {r['n_simulated']}, "
                   f"path {r['mean_length_cm']:.2f} cm, {r['mean_electrons']:.0f} electrons")
        cd = r["cos_dist"]
        click.echo(f"  {'':12s} Non-ML {cd['nonml']:.3f}  HCN {cd['hcn']:.3f} (5% cut "
                   f"{r['hcn_cos_dist_cut_5pct']:.3f})  Best-Expected {cd['best_expected']:.3f}")
    click.echo(f"ecal: {out}/ecal/summary.json, showers.png, evaluation_*/ (resolution, "
               f"lower is better; network: {results['ecal']['network']})")
    for r in results["ecal"]["rows"]:
        click.echo(f"  {r['set']}: {r['n_stored']} showers in the fiducial volume")
        for line in r["table"].splitlines()[2:]:
            click.echo("    " + line)
    sky = results["sky"]
    click.echo(f"sky: {out}/sky/summary.json, evaluation/report.html ({sky['n_patches']} "
               f"patches, IEM B; network: {sky['network']})")
    for line in sky["table"].splitlines():
        click.echo("    " + line)
    click.echo(f"demo finished in {time.time() - t0:.0f} s")
