"""Sweeps: many checkpoints x suites, one scheduler locally or a Slurm array job (docs/sweeps.md)."""
