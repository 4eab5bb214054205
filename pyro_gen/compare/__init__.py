"""Targets of ``pyro-gen compare``: one module per target, each registering itself."""
