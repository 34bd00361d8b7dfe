"""SCoRe and its ablations (registered through the ``scorebench.methods`` entry point)."""
