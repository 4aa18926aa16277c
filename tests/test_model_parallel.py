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
from sm_magic.backends import BackendError
from sm_magic.bundle.build import BundleCode, JobSpec, build_bundle
from sm_magic.config.model import TrainConfig
from sm_magic.container.entry import launch_command
from sm_magic.jobs.registry import Registry
from sm_magic.software import requirements as reqs

from helpers.aws_moto import ROLE_NAME

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
    bundle = build_bundle(BundleCode("print(1)\n"), JobSpec(TrainConfig(**FSDP), [], name="j"), dest=tmp_path / "b")
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
    bundle = build_bundle(BundleCode("print(1)\n"), JobSpec(cfg, [], name="j"), dest=tmp_path / "b")
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
    # The image the config names (Python 3.10, PyTorch 2.1.0) is the one used, with the accelerate that installs there.
    written = aws.client("s3").get_object(Bucket=bucket, Key=f"{prefix}/requirements.txt")["Body"].read().decode()
    assert reqs.job_launcher((3, 10), {"torch": "2.1.0"}).pin in written.splitlines()
    assert request["AlgorithmSpecification"]["TrainingImage"].endswith("2.1.0-transformers4.36.0-gpu-py310-cu121-ubuntu20.04")


# What accelerate 1.0.0 knows, the oldest release a job may get (requirements.job_launcher, for an image
# with Python 3.8): the fields of its config file (ClusterConfig: a file with any other key is refused)
# and its launcher's options, which the entry command passes and the fsdp_config and deepspeed_config
# sections set (a key that names none is ignored). From accelerate 1.0.0's config_args.py and launch.py.
ACCELERATE_1_0_CONFIG_KEYS = frozenset("""compute_environment distributed_type mixed_precision use_cpu debug
    num_processes machine_rank num_machines gpu_ids main_process_ip main_process_port rdzv_backend same_network
    main_training_function enable_cpu_affinity deepspeed_config fsdp_config megatron_lm_config ipex_config
    mpirun_config tpu_name tpu_zone tpu_use_cluster tpu_use_sudo command_file commands tpu_vm tpu_env
    dynamo_config downcast_bf16""".split())
ACCELERATE_1_0_LAUNCH_OPTIONS = frozenset("""config_file cpu debug downcast_bf16 enable_cpu_affinity gpu_ids
    machine_rank main_process_ip main_process_port main_training_function mixed_precision multi_gpu num_machines
    num_processes rdzv_backend same_network use_deepspeed use_fsdp fsdp_activation_checkpointing
    fsdp_auto_wrap_policy fsdp_backward_prefetch fsdp_cpu_ram_efficient_loading fsdp_forward_prefetch
    fsdp_min_num_params fsdp_offload_params fsdp_sharding_strategy fsdp_state_dict_type fsdp_sync_module_states
    fsdp_transformer_layer_cls_to_wrap fsdp_use_orig_params zero_stage offload_optimizer_device
    offload_param_device gradient_accumulation_steps gradient_clipping zero3_init_flag zero3_save_16bit_model
    deepspeed_config_file""".split())


def test_every_accelerate_1x_reads_the_launch_config_and_flags(tmp_path):
    """A job may get an older accelerate than the notebook's (down to 1.0 on a Python 3.8 image):
    the bundle's accelerate_config.yaml and the entry command's flags use only what 1.0 knows."""
    configs = [TrainConfig(), TrainConfig(distributed_type="DATA_PARALLEL", mixed_precision="bf16", gpu_ids="0,1",
                                          enable_cpu_affinity=True, debug=True),
               TrainConfig(**FSDP, fsdp_transformer_layer_cls_to_wrap="BertLayer"),
               TrainConfig(distributed_type="DEEPSPEED", deepspeed_zero_stage=3, deepspeed_offload_param_device="cpu",
                           deepspeed_offload_optimizer_device="cpu", deepspeed_gradient_accumulation_steps=4)]
    for i, cfg in enumerate(configs):
        bundle = build_bundle(BundleCode("print(1)\n"), JobSpec(cfg, ["--epochs", "1"], name="j"), dest=tmp_path / str(i))
        written = yaml.safe_load((bundle.path / "accelerate_config.yaml").read_text())
        assert set(written) <= ACCELERATE_1_0_CONFIG_KEYS, set(written) - ACCELERATE_1_0_CONFIG_KEYS
        for section in ("fsdp_config", "deepspeed_config"):
            assert set(written.get(section) or {}) <= ACCELERATE_1_0_LAUNCH_OPTIONS, written[section]
        for gpus in (8, 0):
            cmd, _ = accelerate_args(bundle, gpus=gpus)
            flags = {arg[2:] for arg in cmd[3:cmd.index(str(bundle.path / "train.py"))] if arg.startswith("--")}
            assert flags <= ACCELERATE_1_0_LAUNCH_OPTIONS, flags - ACCELERATE_1_0_LAUNCH_OPTIONS
