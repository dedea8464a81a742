"""Test session set-up: a private data folder and the smoke profile for everything.

`WORKBENCH_DATA` points at one temporary folder for the whole session (set before any
workbench import), so corpora, runs and caches made by one test or notebook are reused by the
next and nothing touches the repository's data/. Set WORKBENCH_TEST_DATA to keep that folder
between sessions.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_data = os.environ.get("WORKBENCH_TEST_DATA") or tempfile.mkdtemp(prefix="workbench-test-data-")
os.environ["WORKBENCH_DATA"] = str(Path(_data).resolve())
os.environ["WORKBENCH_PROFILE"] = "smoke"
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402

from workbench.config import load_profile  # noqa: E402


@pytest.fixture(scope="session")
def smoke_cfg():
    return load_profile("smoke")


@pytest.fixture(scope="session")
def smoke_store(smoke_cfg):
    """The smoke-profile embedded corpus (generated once per session)."""
    from workbench.data.datasets import open_dataset

    return open_dataset(smoke_cfg)
