"""Header-only HLS C++ kernel library (package data only)."""
