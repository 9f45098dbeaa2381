"""The ``astroreco`` command line: a click group, one module per detector group.

Every command is a thin wrapper over a plain Python function with the same keyword
arguments.  Errors meant for the user (:class:`astroreco.AstrorecoError`) are printed as one
line, ``error: ...``, with exit status 2 -- never a traceback.
"""

from __future__ import annotations

import sys

import click

from astroreco import __version__
from astroreco.errors import AstrorecoError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except AstrorecoError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="astroreco")
def cli():
    """Deep-learning event reconstruction for astroparticle detectors, always measured
    against the classical reconstruction on the same events."""


def _register():
    from astroreco.cli.demo import demo
    from astroreco.cli.ecal import ecal
    from astroreco.cli.ixpe import ixpe
    from astroreco.cli.sky import sky
    from astroreco.cli.tpc import tpc

    cli.add_command(ixpe)
    cli.add_command(tpc)
    cli.add_command(ecal)
    cli.add_command(sky)
    cli.add_command(demo)


_register()


def main(argv=None):
    """Console-script entry point."""
    return cli.main(args=argv, prog_name="astroreco")
