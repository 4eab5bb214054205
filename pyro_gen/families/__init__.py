"""Registry entries of the built-in families, one module each, referenced from pyproject's
``[project.entry-points."pyro_gen.models"]`` exactly like a third-party plug-in's."""
