"""Saving matplotlib figures the way every astroreco plot is saved: PNG, written atomically
(a temporary file beside the target, then renamed), the figure closed afterwards."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from astroreco.io.store import atomic_path  # noqa: E402


def save_figure(fig, path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically, close it, and return the path."""
    path = Path(path)
    try:
        with atomic_path(path, overwrite=True) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
