"""Sidebar panels (N-panel tab "Conjure"), the Add menu and the status bar: draw() only,
no logic, network or file I/O."""

from __future__ import annotations

from .main import CLASSES, attach, detach

__all__ = ["CLASSES", "attach", "detach"]
