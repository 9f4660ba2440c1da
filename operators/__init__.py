"""Operators: thin bpy wrappers that snapshot inputs and hand work to the engine/importers."""

from __future__ import annotations

CLASSES: tuple[type, ...] = ()


def attach() -> None:
    """Menus, file handlers' side effects: everything beyond class registration."""


def detach() -> None:
    """Undo attach() and stop anything live (timers, threads) so disable leaves nothing."""
