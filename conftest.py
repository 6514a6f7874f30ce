"""Root conftest: only what must live at the root. pytester drives the framework's own tests."""
pytest_plugins = ("pytester",)
