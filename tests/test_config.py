"""TrainConfig: reading and writing accelerate's SageMaker YAML, layering, and the errors a user sees."""

from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import SageMakerConfig, load_config_from_file

from sm_magic.config.accelerate_yaml import CREDENTIAL_KEYS
from sm_magic.config.files import accelerate_default_config_path
from sm_magic.config.model import ConfigError, TrainConfig
from sm_magic.config.resolve import resolve_config

# The example config of the Hugging Face Accelerate guide "Amazon SageMaker", as `accelerate config`
# writes it (xxxxx placeholders included).
GUIDE_YAML = """\
base_job_name: accelerate-sagemaker-1
compute_environment: AMAZON_SAGEMAKER
distributed_type: DATA_PARALLEL
ec2_instance_type: ml.p3.16xlarge
iam_role_name: xxxxx
image_uri: null
mixed_precision: fp16
num_machines: 1
profile: xxxxx
py_version: py38
pytorch_version: 1.10.2
region: us-east-1
transformers_version: 4.17.0
use_cpu: false
"""


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Keep every test away from the user's home and accelerate default config."""
    hf_home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg_cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return hf_home


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_default(text: str) -> Path:
    """Write accelerate's default config file ($HF_HOME/accelerate/default_config.yaml)."""
    return write(accelerate_default_config_path(), text)


# -- the guide's example ------------------------------------------------------------------------


def test_default_config_path_derives_from_hf_home(isolated_home):
    assert accelerate_default_config_path() == isolated_home / "accelerate" / "default_config.yaml"


def test_guide_example_loads_with_every_value(tmp_path):
    cfg = TrainConfig.from_yaml(write(tmp_path / "guide.yaml", GUIDE_YAML))
    assert cfg.base_job_name == "accelerate-sagemaker-1"
    assert cfg.compute_environment == "AMAZON_SAGEMAKER"
    assert cfg.distributed_type == "DATA_PARALLEL"
    assert cfg.ec2_instance_type == "ml.p3.16xlarge"
    assert cfg.iam_role_name == "xxxxx"
    assert cfg.image_uri is None
    assert cfg.mixed_precision == "fp16"
    assert cfg.num_machines == 1
    assert cfg.profile == "xxxxx"
    assert cfg.py_version == "py38"
    assert cfg.pytorch_version == "1.10.2"
    assert cfg.region == "us-east-1"
    assert cfg.transformers_version == "4.17.0"
    assert cfg.use_cpu is False
    assert cfg.extra_keys == {}
    assert cfg.backend == "sagemaker"


def test_guide_example_with_additional_args(tmp_path):
    text = GUIDE_YAML + "additional_args:\n  use_spot_instances: True\n  max_wait: 86400\n  enable_network_isolation: True\n"
    cfg = TrainConfig.from_yaml(write(tmp_path / "spot.yaml", text))
    # Spot settings become typed fields (the form's "Spot & checkpoints" group) ...
    assert cfg.use_spot_instances is True and cfg.max_wait == 86400
    assert cfg.additional_args == {"enable_network_isolation": True}
    assert cfg.ec2_instance_type == "ml.p3.16xlarge"
    # ... and go back under additional_args in the YAML, where accelerate expects them.
    written = yaml.safe_load(cfg.to_yaml())
    assert written["additional_args"] == {"use_spot_instances": True, "max_wait": 86400,
                                          "enable_network_isolation": True}
    assert "max_wait" not in written and "use_spot_instances" not in written


def test_spot_rules_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="max_wait applies to spot jobs only"):
        resolve_config(overrides={"max_wait": 3600})
    with pytest.raises(ConfigError, match=r"max_wait \(60 s\) must be at least max_run \(3600 s\)"):
        resolve_config(overrides={"use_spot_instances": True, "max_wait": 60, "max_run": 3600})


@pytest.mark.parametrize(
    "instance_type, backend",
    [("local", "local"), ("local_gpu", "local"), ("local_container", "local-container"),
     ("ml.g5.xlarge", "sagemaker")],
)
def test_instance_type_selects_backend(tmp_path, instance_type, backend):
    cfg = TrainConfig.from_yaml(write(tmp_path / "c.yaml", f"ec2_instance_type: {instance_type}\n"))
    assert cfg.backend == backend


def test_yaml_no_for_mixed_precision_means_no(tmp_path):
    # YAML 1.1 reads an unquoted `no` as False; accelerate writes it quoted, users often do not.
    cfg = TrainConfig.from_yaml(write(tmp_path / "c.yaml", "mixed_precision: no\n"))
    assert cfg.mixed_precision == "no"


def test_missing_keys_take_defaults(tmp_path):
    cfg = TrainConfig.from_yaml(write(tmp_path / "c.yaml", "region: eu-west-1\n"))
    assert cfg.region == "eu-west-1"
    assert cfg == TrainConfig(region="eu-west-1")


def test_empty_file_gives_defaults(tmp_path):
    assert TrainConfig.from_yaml(write(tmp_path / "c.yaml", "")) == TrainConfig()


# -- round trip ---------------------------------------------------------------------------------


def test_round_trip_guide_example_is_equal_and_accelerate_loads_it(tmp_path):
    cfg = TrainConfig.from_yaml(write(tmp_path / "guide.yaml", GUIDE_YAML))
    out = tmp_path / "saved" / "config.yaml"
    text = cfg.to_yaml(out)
    assert out.read_text(encoding="utf-8") == text
    assert TrainConfig.from_yaml(out) == cfg

    loaded = load_config_from_file(str(out))
    assert isinstance(loaded, SageMakerConfig)
    assert loaded.ec2_instance_type == "ml.p3.16xlarge"
    assert loaded.iam_role_name == "xxxxx"
    assert loaded.mixed_precision == "fp16"
    assert loaded.num_machines == 1
    assert loaded.distributed_type.value == "DATA_PARALLEL"
    assert loaded.base_job_name == "accelerate-sagemaker-1"
    # No stray temporary files from the atomic write.
    assert sorted(p.name for p in out.parent.iterdir()) == ["config.yaml"]


def test_round_trip_of_many_changed_fields_is_equal_and_accelerate_loads_it(tmp_path):
    cfg = TrainConfig(
        ec2_instance_type="ml.g5.12xlarge", num_machines=3, distributed_type="DATA_PARALLEL",
        mixed_precision="bf16", iam_role_name="arn:aws:iam::123456789012:role/SageMakerRole",
        profile="research", region="eu-central-1", base_job_name="bert-finetune",
        image_uri="123456789012.dkr.ecr.eu-central-1.amazonaws.com/train:latest",
        pytorch_version="2.1.0", transformers_version="4.36.0", py_version="py310",
        sagemaker_inputs_file="inputs.tsv", sagemaker_metrics_file="metrics.tsv",
        additional_args={"use_spot_instances": True, "max_wait": 86400, "max_run": 3600},
        gpu_ids="0,1", debug=True, enable_cpu_affinity=True, dynamo_config={"dynamo_backend": "INDUCTOR"},
    )
    path = tmp_path / "c.yaml"
    cfg.to_yaml(path)
    assert TrainConfig.from_yaml(path) == cfg
    loaded = SageMakerConfig.from_yaml_file(str(path))
    assert loaded.ec2_instance_type == "ml.g5.12xlarge"
    assert loaded.num_machines == 3
    assert loaded.additional_args == {"use_spot_instances": True, "max_wait": 86400, "max_run": 3600}
    assert loaded.dynamo_config == {"dynamo_backend": "INDUCTOR"}
    assert loaded.pytorch_version == "2.1.0"


def test_version_strings_that_look_like_numbers_stay_strings(tmp_path):
    path = tmp_path / "c.yaml"
    TrainConfig(pytorch_version="2.0", transformers_version="4.40").to_yaml(path)
    raw = yaml.safe_load(path.read_text())
    assert raw["pytorch_version"] == "2.0" and raw["transformers_version"] == "4.40"
    assert TrainConfig.from_yaml(path).pytorch_version == "2.0"


def test_to_yaml_without_path_returns_text_only(tmp_path):
    text = TrainConfig(region="ap-south-1").to_yaml()
    assert yaml.safe_load(text)["region"] == "ap-south-1"
    assert list(tmp_path.iterdir()) == []


def test_accelerate_keys_without_field_survive_round_trip(tmp_path):
    path = write(tmp_path / "c.yaml", GUIDE_YAML + "fsdp_config:\n  fsdp_sharding_strategy: SHARD_GRAD_OP\n"
                 "  fsdp_offload_params: true\n  fsdp_version: 2\nmain_process_port: 29501\n")
    cfg = TrainConfig.from_yaml(path)
    # Keys with a field become the field; the rest of the section is kept as it was.
    assert (cfg.fsdp_sharding_strategy, cfg.fsdp_offload_params) == ("SHARD_GRAD_OP", True)
    assert cfg.extra_keys == {"fsdp_config": {"fsdp_version": 2}, "main_process_port": 29501}
    out = tmp_path / "out.yaml"
    cfg.to_yaml(out)
    raw = yaml.safe_load(out.read_text())
    assert raw["fsdp_config"] == {"fsdp_sharding_strategy": "SHARD_GRAD_OP", "fsdp_offload_params": True,
                                  "fsdp_version": 2}
    assert raw["main_process_port"] == 29501
    again = TrainConfig.from_yaml(out)
    assert again == cfg


def test_fsdp_and_deepspeed_settings_live_in_accelerates_sections(tmp_path):
    cfg = TrainConfig(distributed_type="FSDP", fsdp_auto_wrap_policy="SIZE_BASED_WRAP", fsdp_min_num_params=1000)
    raw = yaml.safe_load(cfg.to_yaml())
    assert raw["fsdp_config"]["fsdp_auto_wrap_policy"] == "SIZE_BASED_WRAP"
    assert raw["fsdp_config"]["fsdp_sharding_strategy"] == "FULL_SHARD"  # the chosen mode writes all of it
    assert "fsdp_auto_wrap_policy" not in raw and "deepspeed_config" not in raw
    ds = TrainConfig(distributed_type="DEEPSPEED", deepspeed_zero_stage=3, deepspeed_offload_param_device="cpu")
    assert yaml.safe_load(ds.to_yaml())["deepspeed_config"] == {
        "zero_stage": 3, "offload_param_device": "cpu", "offload_optimizer_device": "none",
        "gradient_accumulation_steps": 1}
    assert TrainConfig.from_yaml(write(tmp_path / "ds.yaml", ds.to_yaml())) == ds
    with pytest.raises(ConfigError, match="zero_stage"):
        resolve_config(config_file=write(tmp_path / "bad.yaml", "distributed_type: DEEPSPEED\n"
                                                                 "deepspeed_config:\n  zero_stage: 4\n"))


def test_key_unlike_any_known_warns_and_survives_round_trip(tmp_path):
    path = write(tmp_path / "c.yaml", "ec2_instance_type: ml.g5.xlarge\nzzz_future_option:\n  depth: 7\n")
    with pytest.warns(UserWarning, match="zzz_future_option") as record:
        cfg = TrainConfig.from_yaml(path)
    assert str(path) in str(record[0].message) and "line 2" in str(record[0].message)
    assert cfg.extra_keys == {"zzz_future_option": {"depth": 7}}
    out = tmp_path / "out.yaml"
    cfg.to_yaml(out)
    assert yaml.safe_load(out.read_text())["zzz_future_option"] == {"depth": 7}
    with pytest.warns(UserWarning, match="zzz_future_option"):
        assert TrainConfig.from_yaml(out) == cfg


# -- layering: defaults < accelerate default file (SageMaker only) < --config < flags -------------


def test_defaults_when_nothing_is_given():
    assert resolve_config() == TrainConfig()
    assert resolve_config().backend == "local"


def test_sagemaker_default_file_is_used():
    write_default(GUIDE_YAML.replace("us-east-1", "eu-west-1"))
    cfg = resolve_config()
    assert cfg.region == "eu-west-1"
    assert cfg.ec2_instance_type == "ml.p3.16xlarge"
    assert cfg.mixed_precision == "fp16"
    assert cfg.backend == "sagemaker"


def test_local_machine_default_file_is_ignored():
    write_default("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nmixed_precision: bf16\n"
                  "num_processes: 8\nnum_machines: 4\ngpu_ids: all\nmachine_rank: 0\nuse_cpu: false\n")
    assert resolve_config() == TrainConfig()


def test_default_file_without_compute_environment_is_ignored():
    # accelerate treats a missing compute_environment as LOCAL_MACHINE.
    write_default("mixed_precision: bf16\nnum_machines: 4\n")
    assert resolve_config() == TrainConfig()


def test_config_file_wins_over_default_file_and_keeps_its_other_keys(tmp_path):
    write_default(GUIDE_YAML.replace("us-east-1", "eu-west-1"))
    given = write(tmp_path / "mine.yaml", "compute_environment: AMAZON_SAGEMAKER\nec2_instance_type: ml.g5.xlarge\n"
                  "num_machines: 2\n")
    cfg = resolve_config(config_file=given)
    assert cfg.ec2_instance_type == "ml.g5.xlarge"  # from --config
    assert cfg.num_machines == 2  # from --config
    assert cfg.region == "eu-west-1"  # from the default file
    assert cfg.iam_role_name == "xxxxx"  # from the default file
    assert cfg.base_job_name == "accelerate-sagemaker-1"  # from the default file


def test_from_yaml_reads_only_that_file(tmp_path):
    write_default(GUIDE_YAML.replace("us-east-1", "eu-west-1"))
    cfg = TrainConfig.from_yaml(write(tmp_path / "c.yaml", "num_machines: 2\n"))
    assert cfg.region == "us-east-1"
    assert cfg.ec2_instance_type == "local"
    assert cfg.num_machines == 2


def test_overrides_win_and_flag_names_map_to_accelerate_keys(tmp_path):
    write_default(GUIDE_YAML.replace("us-east-1", "eu-west-1"))
    given = write(tmp_path / "mine.yaml", "ec2_instance_type: ml.g5.xlarge\nnum_machines: 2\nmixed_precision: bf16\n")
    cfg = resolve_config(config_file=given, overrides={
        "instance_type": "ml.p4d.24xlarge", "instance_count": 4, "mixed_precision": None, "region": None,
        "base_job_name": "from-flag"})
    assert cfg.ec2_instance_type == "ml.p4d.24xlarge"
    assert cfg.num_machines == 4
    assert cfg.base_job_name == "from-flag"
    assert cfg.mixed_precision == "bf16"  # None: not given, the file's value stays
    assert cfg.region == "eu-west-1"  # None: not given, the default file's value stays


def test_overrides_with_accelerate_key_names_also_work():
    cfg = resolve_config(overrides={"ec2_instance_type": "ml.g5.2xlarge", "num_machines": 3})
    assert (cfg.ec2_instance_type, cfg.num_machines) == ("ml.g5.2xlarge", 3)


def test_overrides_on_a_base_config():
    base = TrainConfig(ec2_instance_type="ml.g5.xlarge", region="eu-west-1", extra_keys={"main_process_port": 1})
    cfg = resolve_config(base=base, overrides={"instance_count": 2, "instance_type": None})
    assert cfg.num_machines == 2
    assert cfg.ec2_instance_type == "ml.g5.xlarge"
    assert cfg.region == "eu-west-1"
    assert cfg.extra_keys == {"main_process_port": 1}


# -- errors -------------------------------------------------------------------------------------


def test_missing_file_names_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "nope" / "config.yaml"
    with pytest.raises(ConfigError) as e:
        resolve_config(config_file=missing)
    msg = str(e.value)
    assert str(missing) in msg
    assert "does not exist" in msg
    assert "check the path" in msg


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.yaml", "region: us-east-1\nnum_machines: 2\nec2_instance_type: ml.g5.xlarge: oops\n")
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_yaml(path)
    msg = str(e.value)
    assert str(path) in msg
    assert "line 3" in msg
    assert "not valid YAML" in msg
    assert "fix the file" in msg


def test_yaml_that_is_not_a_mapping_is_refused(tmp_path):
    path = write(tmp_path / "list.yaml", "- ec2_instance_type\n- ml.g5.xlarge\n")
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_yaml(path)
    assert str(path) in str(e.value)
    assert "mapping" in str(e.value)


def test_misspelt_key_names_the_closest_valid_key(tmp_path):
    path = write(tmp_path / "typo.yaml", "region: us-east-1\nec2_instance_typ: ml.p3.2xlarge\n")
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_yaml(path)
    msg = str(e.value)
    assert str(path) in msg
    assert "line 2" in msg
    assert "`ec2_instance_typ`" in msg
    assert "did you mean `ec2_instance_type`" in msg


def test_misspelt_override_names_the_closest_key():
    with pytest.raises(ConfigError) as e:
        resolve_config(overrides={"mixed_precison": "fp16"})
    assert "mixed_precision" in str(e.value)


def test_instance_count_below_one_in_file_names_file_and_line(tmp_path):
    path = write(tmp_path / "c.yaml", "ec2_instance_type: ml.g5.xlarge\nregion: us-east-1\nnum_machines: 0\n")
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_yaml(path)
    msg = str(e.value)
    assert f"{path} line 3" in msg
    assert "num_machines" in msg
    assert "greater than or equal to 1" in msg
    assert "got 0" in msg


def test_instance_count_below_one_from_flag_names_the_flag():
    with pytest.raises(ConfigError) as e:
        resolve_config(overrides={"instance_count": 0})
    msg = str(e.value)
    assert "--instance-count" in msg
    assert "greater than or equal to 1" in msg


def test_bad_instance_type_from_flag_names_the_flag():
    with pytest.raises(ConfigError) as e:
        resolve_config(overrides={"instance_type": "p3.2xlarge"})
    msg = str(e.value)
    assert "--instance-type" in msg
    assert "'p3.2xlarge' is not an instance type" in msg


def test_unknown_mixed_precision_names_choices_file_and_line(tmp_path):
    path = write(tmp_path / "c.yaml", "mixed_precision: fp32\n")
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_yaml(path)
    msg = str(e.value)
    assert f"{path} line 1" in msg
    assert "mixed_precision" in msg
    assert "'fp32'" in msg
    for choice in ("'no'", "'fp16'", "'bf16'", "'fp8'"):
        assert choice in msg


@pytest.mark.parametrize("bad", ["p3.2xlarge", "ml.", "ML.P3.2XLARGE", "gpu"])
def test_bad_instance_type_names_file_line_and_examples(tmp_path, bad):
    path = write(tmp_path / "c.yaml", f"region: us-east-1\nec2_instance_type: {bad}\n")
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_yaml(path)
    msg = str(e.value)
    assert f"{path} line 2" in msg
    assert f"'{bad}' is not an instance type" in msg
    assert "ml.p3.2xlarge" in msg and "local" in msg


def test_local_machine_config_given_as_config_is_refused(tmp_path):
    path = write(tmp_path / "local.yaml", "distributed_type: MULTI_GPU\ncompute_environment: LOCAL_MACHINE\n"
                 "num_processes: 2\n")
    with pytest.raises(ConfigError) as e:
        resolve_config(config_file=path)
    msg = str(e.value)
    assert f"{path} line 2" in msg
    assert "LOCAL_MACHINE" in msg
    assert "AWS (Amazon SageMaker)" in msg


def test_credential_at_top_level_is_refused(tmp_path):
    path = write(tmp_path / "c.yaml", GUIDE_YAML + "aws_secret_access_key: SUPERSECRETVALUE\n")
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_yaml(path)
    msg = str(e.value)
    assert f"{path} line 15" in msg
    assert "aws_secret_access_key" in msg
    assert "credential" in msg
    assert "profile" in msg
    assert "SUPERSECRETVALUE" not in msg


@pytest.mark.parametrize("key", sorted(CREDENTIAL_KEYS) + ["AWS_ACCESS_KEY_ID"])
def test_every_credential_key_is_refused_at_top_level(tmp_path, key):
    with pytest.raises(ConfigError, match=key):
        TrainConfig.from_yaml(write(tmp_path / "c.yaml", f"{key}: x\n"))


def test_credential_inside_additional_args_is_refused(tmp_path):
    path = write(tmp_path / "c.yaml", GUIDE_YAML + "additional_args:\n  max_wait: 86400\n"
                 "  aws_secret_access_key: SUPERSECRETVALUE\n")
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_yaml(path)
    msg = str(e.value)
    assert f"{path} line 15" in msg
    assert "additional_args" in msg
    assert "aws_secret_access_key" in msg
    assert "profile" in msg


def test_credential_in_additional_args_refused_on_assignment():
    cfg = TrainConfig()
    with pytest.raises(ValueError, match="aws_session_token"):
        cfg.additional_args = {"aws_session_token": "t"}


def test_credential_override_is_refused():
    with pytest.raises(ConfigError, match="aws_access_key_id"):
        resolve_config(overrides={"aws_access_key_id": "AKIA..."})


def test_to_yaml_of_loaded_configs_has_no_credentials(tmp_path):
    spot = "additional_args:\n  use_spot_instances: true\n  max_wait: 86400\n"
    cfg = TrainConfig.from_yaml(write(tmp_path / "c.yaml", GUIDE_YAML + spot))
    text = cfg.to_yaml().lower()
    for key in CREDENTIAL_KEYS:
        assert key not in text


def test_credential_value_is_never_echoed_in_an_error_message(tmp_path):
    # A refused credential must not be printed into the notebook by the message that refuses it.
    path = write(tmp_path / "c.yaml", "additional_args:\n  aws_secret_access_key: SUPERSECRETVALUE\n")
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_yaml(path)
    assert "SUPERSECRETVALUE" not in str(e.value)


@pytest.mark.parametrize("how", ["extra_keys", "additional_args_in_place"])
def test_to_yaml_never_writes_credentials(tmp_path, how):
    # A config built in code (the form, the planner), or additional_args mutated in place (which
    # validate_assignment does not see), must still never be written with a secret.
    path = tmp_path / "c.yaml"
    try:
        if how == "extra_keys":
            cfg = TrainConfig(extra_keys={"aws_secret_access_key": "SUPERSECRETVALUE"})
        else:
            cfg = TrainConfig()
            cfg.additional_args["aws_secret_access_key"] = "SUPERSECRETVALUE"
        cfg.to_yaml(path)
    except (ConfigError, ValueError):
        pass  # refusing is fine too
    written = path.read_text() if path.exists() else ""
    assert "SUPERSECRETVALUE" not in written
    assert "aws_secret_access_key" not in written


def test_legacy_fp16_key_converts_as_accelerate_does(tmp_path):
    # accelerate converts the legacy key `fp16: true` to mixed_precision fp16 (process_config).
    path = write(tmp_path / "legacy.yaml", GUIDE_YAML.replace("mixed_precision: fp16\n", "fp16: true\n"))
    assert load_config_from_file(str(path)).mixed_precision == "fp16"
    assert TrainConfig.from_yaml(path).mixed_precision == "fp16"
