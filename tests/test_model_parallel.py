"""Model parallel (FSDP, DeepSpeed): config to bundle to accelerate's own launcher, on both backends.

The training itself needs GPUs (accelerate runs FSDP and DeepSpeed on GPUs only); this machine has
none, so what runs here is everything up to the launch, checked with accelerate's own parser and
validation, the SageMaker request, and the local backend's refusal. bench/gpu_check.py runs a
real FSDP job on a GPU machine.
"""

import json

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser

import sm_magic
from helpers.aws_moto import ROLE_NAME
from sm_magic.backends import BackendError
from sm_magic.bundle import build_bundle
from sm_magic.config import TrainConfig
from sm_magic.registry import Registry
from sm_magic.sm_entry import launch_command

FSDP = dict(distributed_type="FSDP", fsdp_sharding_strategy="SHARD_GRAD_OP", fsdp_auto_wrap_policy="SIZE_BASED_WRAP",
            fsdp_min_num_params=2000, fsdp_state_dict_type="SHARDED_STATE_DICT", fsdp_offload_params=True)


def accelerate_args(bundle, host="algo-2", gpus=8):
    """What accelerate's launcher makes of the entry command on `host` of two 8-GPU hosts."""
    spec = json.loads((bundle.path / "sm_launch.json").read_text())
    env = {"SM_HOSTS": '["algo-1", "algo-2"]', "SM_CURRENT_HOST": host, "SM_NUM_GPUS": str(gpus)}
    cmd, _ = launch_command(spec, env, str(bundle.path))
    args = launch_command_parser().parse_args(cmd[3:])
    args, defaults, _ = _validate_launch_command(args)
    return cmd, args


def test_fsdp_options_reach_accelerates_launcher(tmp_path):
    bundle = build_bundle("print(1)\n", TrainConfig(**FSDP), [], name="j", dest=tmp_path / "b")
    launch_cfg = load_config_from_file(str(bundle.path / "accelerate_config.yaml"))  # accelerate's own loader
    assert launch_cfg.distributed_type == "FSDP"
    cmd, args = accelerate_args(bundle)
    assert "--use_fsdp" in cmd and args.use_fsdp and not args.multi_gpu
    assert (args.num_machines, args.machine_rank, args.num_processes) == (2, 1, 16)
    assert args.fsdp_sharding_strategy == "SHARD_GRAD_OP"
    assert args.fsdp_auto_wrap_policy == "SIZE_BASED_WRAP"
    assert args.fsdp_min_num_params == 2000
    assert args.fsdp_state_dict_type == "SHARDED_STATE_DICT"
    assert args.fsdp_offload_params is True


def test_deepspeed_options_reach_accelerates_launcher_and_requirements(tmp_path):
    cfg = TrainConfig(distributed_type="DEEPSPEED", deepspeed_zero_stage=3, deepspeed_offload_param_device="cpu",
                      deepspeed_gradient_accumulation_steps=4)
    bundle = build_bundle("print(1)\n", cfg, [], name="j", dest=tmp_path / "b")
    written = yaml.safe_load((bundle.path / "accelerate_config.yaml").read_text())
    assert written["distributed_type"] == "DEEPSPEED"
    assert written["deepspeed_config"]["zero_stage"] == 3
    cmd, args = accelerate_args(bundle, host="algo-1")
    assert args.use_deepspeed and (args.machine_rank, args.num_processes) == (0, 16)
    assert (args.zero_stage, args.offload_param_device, args.gradient_accumulation_steps) == (3, "cpu", 4)
    # The training image may lack DeepSpeed: the bundle asks for it.
    assert any(r.startswith("deepspeed") for r in bundle.requirements)


def test_local_backend_without_gpus_refuses_model_parallel_and_writes_nothing(sm_env):
    for mode in ("FSDP", "DEEPSPEED"):
        with pytest.raises(BackendError, match=f"{mode} shards the model across GPUs and this machine has no GPU"):
            sm_magic.launch("print(1)\n", distributed_type=mode)
    with pytest.raises(BackendError, match="use_cpu is set"):
        sm_magic.launch("print(1)\n", distributed_type="FSDP", use_cpu=True)
    assert Registry().list() == []
    assert not (sm_env / "sm_jobs").exists() or not any((sm_env / "sm_jobs").iterdir())


@pytest.mark.jobs
def test_fsdp_job_on_sagemaker_carries_the_fsdp_launch_config(aws, tmp_path):
    job = sm_magic.launch("print(1)\n", backend="sagemaker", instance_type="ml.p4d.24xlarge", instance_count=2,
                          iam_role_name=ROLE_NAME, pytorch_version="2.1.0", transformers_version="4.36.0",
                          py_version="py310", name="fsdp-job-1", **FSDP)
    request = aws.client("sagemaker").describe_training_job(TrainingJobName=job.name)
    assert request["ResourceConfig"]["InstanceCount"] == 2
    code = next(c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]
                if c["ChannelName"] == "code")
    bucket, _, prefix = code.removeprefix("s3://").partition("/")
    body = aws.client("s3").get_object(Bucket=bucket, Key=f"{prefix}/accelerate_config.yaml")["Body"].read()
    launch_cfg = yaml.safe_load(body)
    assert launch_cfg["distributed_type"] == "FSDP"
    assert launch_cfg["fsdp_config"]["fsdp_sharding_strategy"] == "SHARD_GRAD_OP"
