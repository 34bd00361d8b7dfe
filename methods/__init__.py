"""SCoRe and its ablations. They register only through the ``scorebench.methods`` entry points in pyproject.toml,
exactly as a plugin does (one registration path)."""
