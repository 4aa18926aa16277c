"""The job bundle's one entry command: `python sm_entry.py`.

Copied verbatim into every bundle and run by every backend (on SageMaker as the training
command), so it is stdlib only and imports nothing from sm_magic. It reads sm_launch.json and
the SageMaker container environment (SM_HOSTS, SM_CURRENT_HOST, SM_NUM_GPUS), works out this
host's rank, the process count and the main address, then replaces itself with
`accelerate launch ... <script> <args>`. Arguments go through as a list, never a shell string.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PORT = 29500
CPU_PROCESSES_PER_HOST = 2


def launch_command(spec, env, bundle_dir=HERE):
    """The accelerate command line for this host, and notes to print before it runs."""
    notes = []
    hosts = json.loads(env.get("SM_HOSTS") or '["algo-1"]')
    current = env.get("SM_CURRENT_HOST") or hosts[0]
    gpus = int(env.get("SM_NUM_GPUS") or 0)
    use_cpu = bool(spec.get("use_cpu")) or gpus == 0
    precision = spec.get("mixed_precision") or "no"
    if precision == "fp16" and use_cpu:
        notes.append("fp16 needs a GPU and this host has none: training in full precision (fp32)")
        precision = "no"

    cmd = [sys.executable, "-m", "accelerate.commands.launch",
           "--config_file", os.path.join(bundle_dir, "accelerate_config.yaml"),
           "--mixed_precision", precision]
    distributed = spec.get("distributed_type")
    if distributed in ("DATA_PARALLEL", "FSDP", "DEEPSPEED"):
        per_host = int(env.get("SM_MAGIC_CPU_PROCESSES") or CPU_PROCESSES_PER_HOST) if use_cpu else gpus
        main_host = sorted(hosts)[0]
        # FSDP and DeepSpeed come from accelerate_config.yaml (its distributed_type and section).
        cmd += {"DATA_PARALLEL": ["--multi_gpu"], "FSDP": ["--use_fsdp"], "DEEPSPEED": ["--use_deepspeed"]}[distributed]
        cmd += ["--num_machines", str(len(hosts)),
                "--machine_rank", str(sorted(hosts).index(current)),
                "--num_processes", str(per_host * len(hosts)),
                "--main_process_ip", env.get("SM_MAGIC_MAIN_ADDR") or main_host,
                "--main_process_port", str(env.get("SM_MAGIC_MAIN_PORT") or DEFAULT_PORT)]
        if use_cpu:
            notes.append(f"no GPU: {per_host} CPU processes per host (gloo)")
    else:
        cmd += ["--num_processes", "1", "--num_machines", "1"]
        if use_cpu:
            cmd.append("--cpu")
    cmd.append(os.path.join(bundle_dir, spec["script"]))
    cmd += list(spec.get("args", []))
    return cmd, notes


def launch_env(spec, env):
    """Environment changes for the launched processes."""
    # The job's environment says ACCELERATE_USE_SAGEMAKER / DATA_PARALLEL, as accelerate's own
    # launcher sets it; taken literally, accelerate would then use SageMaker's smddp library
    # (absent from the images). This command does the distribution itself (accelerate across
    # SM_HOSTS), so the processes it starts are told so.
    updates = {"ACCELERATE_SAGEMAKER_DISTRIBUTED_TYPE": "NO"}
    if not env.get("SM_CHECKPOINT_DIR"):
        # SageMaker syncs this directory with CheckpointConfig.S3Uri but names it nowhere.
        updates["SM_CHECKPOINT_DIR"] = spec.get("checkpoint_dir") or "/opt/ml/checkpoints"
    gpus = int(env.get("SM_NUM_GPUS") or 0)
    if spec.get("use_cpu") or gpus == 0:
        # Without it accelerate starts N unconnected single processes on a CPU-only host;
        # with it they join one gloo process group (MULTI_CPU).
        updates["ACCELERATE_USE_CPU"] = "true"
    if spec.get("use_cpu"):
        updates["CUDA_VISIBLE_DEVICES"] = ""
    return updates


def main():
    with open(os.path.join(HERE, "sm_launch.json"), encoding="utf-8") as f:
        spec = json.load(f)
    cmd, notes = launch_command(spec, os.environ)
    for note in notes:
        print(f"sm_magic: {note}", flush=True)
    os.environ.update(launch_env(spec, os.environ))
    os.chdir(HERE)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
