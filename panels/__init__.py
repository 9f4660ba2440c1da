"""Sidebar panels (N-panel tab "Conjure"): draw() only, no logic, network or file I/O."""

from __future__ import annotations

from .main import CLASSES

__all__ = ["CLASSES"]
