"""astroreco: deep-learning event reconstruction for astroparticle detectors.

Every neural reconstruction is measured side by side with the classical reconstruction
that physicists use today, on the same events.  See the README for the two set-up
commands (``make demo``, ``make test``) and a worked example.
"""

from astroreco.errors import AstrorecoError, InputError

__version__ = "0.1.0"

__all__ = ["AstrorecoError", "InputError", "__version__"]
