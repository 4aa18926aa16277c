"""Shared test helpers: job scripts and waits, moto AWS, the emulated training container, git repos, a faulty proxy, JupyterLab."""
