"""Losses as pure functions; each docstring names the equation it implements."""
