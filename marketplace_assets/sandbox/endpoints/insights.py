"""Sandbox endpoints: insights (being filled in)."""

from __future__ import annotations

from marketplace_assets.sandbox.routing import Route

ROUTES: tuple[Route, ...] = ()
