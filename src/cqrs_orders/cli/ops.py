"""Subcommands of the ops area (placeholder until that area lands)."""


def register(subcommands, common) -> None:
    """Add this area's subcommands; each sets ``run(args, settings) -> exit code``."""
