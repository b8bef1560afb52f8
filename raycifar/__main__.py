"""``python -m raycifar`` runs the command line."""

from raycifar.cli import app

app(prog_name="raycifar")
