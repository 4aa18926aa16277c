"""The README documents every magic, flag and config key the code has."""

from pathlib import Path

from sm_magic.config import TrainConfig
from sm_magic import train_line
from sm_magic.magic import SageMakerMagics

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_config_key_is_in_the_reference():
    for name, field in TrainConfig.model_fields.items():
        if not field.exclude:
            assert f"| `{name}` |" in README, f"config key {name} is missing from README's config reference"


def test_every_magic_and_train_flag_is_documented():
    for name in SageMakerMagics.magics["line"]:
        assert f"%{name}" in README, name
    assert "%%sagemaker_train" in README
    parser = train_line.parser()
    for action in parser._actions:
        for flag in action.option_strings:
            if flag not in ("-h", "--help"):
                assert f"`{flag}" in README or f"{flag} " in README, f"{flag} is missing from README"
