"""Matplotlib figures as PNG bytes (Agg backend: no display needed)."""
from __future__ import annotations

import io
from typing import Any


def figure_png(fig: Any) -> bytes:
    """Lay out, render and close `fig`; the PNG bytes (for files and for base64 in the HTML report)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
