"""Amaranth components of the accelerator periphery."""
