"""``python -m seedline`` runs the CLI."""

from seedline.cli.launch import main

main()
