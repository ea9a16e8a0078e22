"""The Ray worker runtime: runner (the driver loop), pools (actors), stream, writer, progress and status."""
