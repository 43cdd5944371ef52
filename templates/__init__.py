"""Jinja templates (package data only; this file makes the folder importable as iseg.templates)."""
