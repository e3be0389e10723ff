"""Pipeline stages: thin commands over the library, one module each (see dvc.yaml)."""
