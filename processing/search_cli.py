"""Catalogue commands of ``python -m processing`` (search, duplicates, serve, export, es-setup)."""


def register(subparsers) -> None:
    """Add the catalogue's sub-commands to the CLI's argparse sub-parsers."""
