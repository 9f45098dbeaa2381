"""Run the CLI in-process and check user errors (shared by the CLI tests)."""

from __future__ import annotations

from click.testing import CliRunner

from astroreco.cli import cli


def run(args, ok=True):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def assert_user_error(result, *needles):
    """Exit status 2 and one line ``error: ...`` on stderr, never a traceback."""
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    err = result.stderr.strip()
    assert err.startswith("error: "), err
    assert "\n" not in err, err
    for needle in needles:
        assert needle in err, err
    return err
