"""Launchers: local multi-process, TPU VM, SLURM, and sweep fan-out (scripts; see README.md)."""
