"""The Ray worker runtime: runner, pools, shared near-dup index and local Ray, stream, writer, progress, status."""
