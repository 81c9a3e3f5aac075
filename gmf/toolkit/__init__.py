"""The container-first development toolkit behind ``tasks.py`` (Invoke)."""
