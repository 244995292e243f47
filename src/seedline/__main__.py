"""``python -m seedline`` runs the CLI."""

from seedline.cli.main import main

main()
