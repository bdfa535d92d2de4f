"""Compiled core of ikecore (installed as ``ikecore._fast``); see DESIGN.md, "Layers"."""
