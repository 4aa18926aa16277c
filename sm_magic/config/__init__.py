"""TrainConfig, the one launch configuration (model.py), and everything about reading and writing it:
the effective config from its layers (resolve.py), where accelerate keeps its file (files.py),
accelerate's YAML keys (accelerate_yaml.py), the one bounded YAML reader (safe_yaml.py), the
instance types the form lists, and secrets: credential-shaped values found and masked
(credentials.py, masking.py).

Imports only errors.py and display/.
"""
