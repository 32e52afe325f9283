"""Every test here runs torch on one thread: the samplers loop over many small steps,
which a shared machine's oversubscribed threads slow down by an order of magnitude."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield
