"""Shared fixtures. Tests run offline (HF_HUB_OFFLINE=1): a missing model fails fast, never waits on a hub."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    return Path(os.environ.get("MICROTHEORY_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data (or $MICROTHEORY_DATA); tests that use it are marked `data` and skip without it."""
    d = shared_data_dir()
    if not (d / "entailmentbank").is_dir():
        pytest.skip(f"public data not found at {d} (set MICROTHEORY_DATA to the folder of ../shared/data)")
    return d


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch is a hard dependency
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs CUDA; none on this machine")
    skip_data = pytest.mark.skip(reason=f"public data not found at {shared_data_dir()} (set MICROTHEORY_DATA)")
    have_data = (shared_data_dir() / "entailmentbank").is_dir()
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
        if "data" in item.keywords and not have_data:
            item.add_marker(skip_data)
