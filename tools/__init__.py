"""Lab tools for tests, demos and docs; not part of the runtime wheel."""
