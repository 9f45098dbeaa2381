"""Shared helpers of the benchmarks: machine description, JSON output, table printing."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import numba
        import numpy
        import torch
        info.update(numpy=numpy.__version__, numba=numba.__version__, torch=torch.__version__)
    except ImportError:
        pass
    return info


def write_result(out_dir, name, data) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": machine(), **data}
    path = out / f"{name}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float))
    tmp.replace(path)
    return path


def print_table(rows, columns):
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).rjust(w) for c, w in zip(columns, widths)))


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def model_card_inputs(model_dir):
    """``(config, history)`` of a model directory, for rewriting its card."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    history_file = model_dir / "history.json"
    history = json.loads(history_file.read_text()) if history_file.exists() else []
    return config, history
