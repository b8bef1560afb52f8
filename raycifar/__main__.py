"""``python -m raycifar`` runs the command line."""

from raycifar.cli import main

main()
