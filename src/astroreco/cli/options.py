"""Shared click option builders: every command spells --seed, --out, --overwrite alike."""

from __future__ import annotations

import click


def seed_option(default=0):
    return click.option("--seed", type=click.IntRange(min=0), default=default, show_default=True,
                        help="Run seed; the same seed gives the same events.")


def overwrite_option():
    return click.option("--overwrite", is_flag=True, help="Replace existing output files.")


def out_option(help_text, required=True, default=None):
    return click.option("--out", "-o", type=click.Path(dir_okay=True), required=required,
                        default=default, help=help_text)


def workers_option():
    return click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                        help="1: this process (threads over all CPUs); N > 1: a dask "
                             "LocalCluster of N processes.")


def quiet_option():
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars.")


def device_option(default="cpu"):
    return click.option("--device", default=default, show_default=True,
                        help="torch device: cpu, cuda, cuda:1, ...")
