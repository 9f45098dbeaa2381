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
    from astroreco.detectors.ixpe import demo as ixpe_demo

    out = Path(out_dir)
    results = {}
    results["ixpe"] = ixpe_demo.run(out / "ixpe", n_per_line=n_per_line, seed=seed,
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
    for detector, metrics in results.items():
        click.echo(f"{detector}: {len(metrics['rows'])} metric rows -> "
                   f"{out}/{detector}/evaluation/report.html")
        for r in metrics["rows"]:
            if "mu" in r:
                click.echo(f"  {r['method']:8s} {r['energy_kev']:4.1f} keV  mu = {r['mu']:.3f} "
                           f"+- {r['mu_err']:.3f}  eps10 = {r['epsilon_10']:.3f}")
    click.echo(f"demo finished in {time.time() - t0:.0f} s")
