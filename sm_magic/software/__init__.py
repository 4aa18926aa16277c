"""What a job's container installs and runs on: requirements.txt for a bundle (requirements.py,
pip_lines.py), the wheels a job without network carries (wheelhouse.py), and the training image
chosen offline from the installed SageMaker SDK's tables (images.py).

Imports config/, errors.py and console.py.
"""
