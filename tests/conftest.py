"""Every test runs with its own registry, jobs directory and accelerate config home."""

import tempfile
import warnings
from pathlib import Path

import pytest

from helpers.jobscripts import end_jobs


@pytest.fixture
def sm_env(tmp_path, monkeypatch):
    """An isolated user: registry, jobs dir and HF_HOME under tmp_path, cwd = tmp_path."""
    monkeypatch.setenv("SM_MAGIC_REGISTRY", str(tmp_path / "registry.sqlite3"))
    monkeypatch.setenv("SM_MAGIC_JOBS_DIR", str(tmp_path / "sm_jobs"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    end_jobs(tmp_path / "sm_jobs")


@pytest.fixture
def tmp_dir(sm_env, monkeypatch):
    """The temporary directory every checkout and bundle goes to, to check that it is left empty."""
    tmp = sm_env / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # tempfile caches its choice
    return tmp


@pytest.fixture(scope="session")
def moto_server():
    """One moto server on 127.0.0.1 for the session (see tests/helpers/aws_moto.py)."""
    from helpers.aws_moto import MotoAWS

    aws = MotoAWS()
    yield aws
    aws.stop()


@pytest.fixture
def aws(moto_server, sm_env, monkeypatch):
    """A user whose environment points at moto, with an IAM role and a bucket there."""
    from helpers.aws_moto import become_user

    return become_user(moto_server, sm_env / "home", monkeypatch)  # no ~/.aws of the machine's user


@pytest.fixture(scope="session")
def ip_shell():
    """The one global IPython test shell, with the extension loaded."""
    from IPython.testing.globalipapp import get_ipython, start_ipython

    shell = start_ipython() or get_ipython()
    shell.run_line_magic("load_ext", "sm_magic")
    return shell


@pytest.fixture
def ip(ip_shell, sm_env):
    return ip_shell


@pytest.fixture
def live_sweeps(sm_env):
    """No sweep of a test goes on queueing jobs after it: its sweeps are stopped before sm_env ends their jobs."""
    from sm_magic import sweeps

    yield
    for sweep in list(sweeps._live.values()):
        sweep.stop()
    sweeps._live.clear()


@pytest.fixture
def comm_messages(monkeypatch):
    """Every widget state update sent to the frontend: (time sent, the widget's comm id)."""
    import time

    import comm

    sent = []
    original = comm.DummyComm.publish_msg

    def publish(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        if msg_type == "comm_msg" and (data or {}).get("method") == "update":
            sent.append((time.monotonic(), self.comm_id))
        return original(self, msg_type, data=data, metadata=metadata, buffers=buffers, **keys)

    monkeypatch.setattr(comm.DummyComm, "publish_msg", publish)
    return sent


# -- markers: `jobs` and `browser` (pyproject.toml), for `make test-fast` ------------------------
#
# `make test-fast` runs `-m "not jobs and not browser"`: everything that needs no real job, process
# that takes seconds, moto server or browser, in under a minute. The marks are given here rather
# than in each module. A new test that starts a real job belongs in JOBS_MODULES or JOBS_TESTS
# below (or uses one of JOBS_FIXTURES); a renamed one is reported as a warning.

TESTS = Path(__file__).resolve().parent

# Any test that uses one of these starts a server (moto) or a browser.
JOBS_FIXTURES = {"moto_server", "_capturing_moto"}  # `aws`, `sagemaker_wire`, `sm_platform` use them
BROWSER_FIXTURES = {"lab_server", "browser"}

# Modules whose every test runs real jobs, but for the ones named (refusals that start nothing).
JOBS_MODULES = {
    "test_concurrent_jobs.py": {"test_launch_checks_from_several_threads_at_once_do_not_collide"},
    "test_container_contract.py": {"test_the_mount_point_is_removed_by_its_last_user_and_only_when_tests_made_it"},
    "test_failure_tail.py": set(),
    "test_kernel_restart.py": set(),
    "test_local_backend.py": {"test_unwritable_jobs_dir_is_refused_before_anything_is_written"},
    "test_notebook.py": set(),
    "test_process_ownership.py": {"test_a_reused_pid_is_never_signalled_and_the_job_ends",
                                  "test_a_recorded_identity_is_proof_and_a_number_alone_is_not"},
    "test_runner_faults.py": {"test_more_hosts_than_the_machine_can_run_are_refused_before_anything_is_written"},
    "test_survival.py": set(),
    "test_wheel.py": set(),
}

# Tests in the other modules that run a real job (or a process or wait that takes seconds).
JOBS_TESTS = {
    "test_bundle.py": {"test_entry_runs_script_with_args_exactly_as_typed_and_no_shell"},
    "test_bundle_safety.py": {"test_links_inside_the_code_are_copied_as_the_files_they_point_to"},
    "test_cli.py": {"test_jobs_logs_and_wait"},
    "test_compare.py": {"test_two_real_local_jobs_compared_after_they_end"},
    "test_entry.py": {"test_a_failure_leaves_the_users_exception_and_line_in_the_failure_file",
                      "test_a_script_that_writes_its_own_reason_keeps_it",
                      "test_sigterm_to_the_entry_command_alone_reaches_the_script_once"},
    "test_eta.py": {"test_a_finished_job_shows_its_epochs_done_in_the_summary_and_the_text",
                    "test_a_running_job_with_a_tqdm_bar_shows_how_far_it_is"},
    "test_export.py": {"test_exported_bundles_run_from_the_command_line",
                       "test_quickstart_exports_and_runs_in_a_shell",
                       "test_git_cells_export_the_repository_at_a_pinned_commit_and_run_without_it"},
    "test_git_source.py": {"test_branch_head_runs_with_its_helper_module_and_requirements",
                           "test_a_commit_older_than_the_branch_head_runs_its_own_code",
                           "test_a_cell_body_replaces_the_entry_script_and_imports_the_repos_modules",
                           "test_entry_in_a_subdirectory_imports_its_neighbours",
                           "test_credentials_in_the_url_are_used_but_never_recorded",
                           "test_magic_with_a_blank_cell_runs_the_repos_entry_at_a_commit"},
    "test_include.py": {"test_helper_cell_is_bundled_with_include_and_the_job_completes",
                        "test_a_file_include_is_importable_by_its_module_name",
                        "test_a_traceback_in_the_bundled_cell_keeps_the_cells_line_numbers"},
    "test_input_bounds.py": {"test_a_yaml_alias_bomb_is_refused_at_load_on_every_surface"},  # a capped process
    "test_job_records.py": {"test_a_registry_locked_past_the_wait_starts_nothing_and_keeps_the_name_free",
                            "test_a_launch_waits_for_a_registry_that_is_released",
                            "test_one_broken_state_file_never_breaks_the_listing"},
    "test_magic.py": {"test_wait_streams_status_and_log_and_returns_the_job",
                      "test_without_wait_the_cell_returns_at_once",
                      "test_line_expansion_and_script_args_reach_the_script_exactly",
                      "test_failed_job_with_wait_fails_the_cell_with_the_reason",
                      "test_jobs_logs_and_stop_magics",
                      "test_simulated_interruption_through_the_magic_and_its_refusals",
                      "test_the_forms_launch_button_starts_the_cells_job_with_the_edited_config"},
    "test_readers.py": {"test_local_job_with_hostile_lines_keeps_its_metrics",
                        "test_disabled_definition_is_said_once_in_the_log"},
    "test_requirements.py": {"test_a_users_requirements_file_replaces_the_generated_one"},
    "test_sagemaker_submit.py": {"test_local_container_job_ends_failed_with_the_reason_when_the_sdk_cannot_run_it"},
    "test_sweep.py": {"test_a_2x2_local_sweep_runs_every_point_with_its_values_at_most_2_at_once_and_attaches_by_name",
                      "test_stop_cancels_the_queued_points_of_a_local_sweep",
                      "test_the_magic_with_wait_prints_one_line_per_job_and_stores_the_sweep",
                      "test_a_sweep_from_a_branch_fetches_once_and_every_job_runs_that_commit",
                      "test_sagemaker_stop_with_a_sweeps_name_stops_its_job_and_cancels_the_queue",
                      "test_a_sweep_stopped_from_another_process_launches_none_of_its_queued_jobs",
                      "test_sm_magic_wait_follows_a_sweep_by_name_and_fails_when_a_job_failed"},
    "test_sweep_widget.py": {"test_a_busy_20_job_sweep_sends_no_more_messages_than_the_single_job_widget",  # 8 s
                             "test_a_local_sweep_is_followed_to_its_summary"},
    "test_widgets.py": {"test_stop_button_stops_a_real_job",
                        "test_a_flood_of_log_lines_sends_a_bounded_number_of_messages",
                        "test_one_monitor_thread_follows_every_job",
                        "test_a_quiet_job_still_refreshes_its_display_about_once_a_second"},  # waits 3 s
}


def _needs_jobs(item) -> bool:
    module, name = item.path.name, getattr(item, "originalname", item.name)
    if JOBS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    if module in JOBS_MODULES:
        return name not in JOBS_MODULES[module]
    return name in JOBS_TESTS.get(module, ())


def pytest_collection_modifyitems(config, items):
    modules = {}
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if item.path.is_relative_to(TESTS / "e2e") or BROWSER_FIXTURES.intersection(fixtures):
            item.add_marker(pytest.mark.browser)
        elif _needs_jobs(item):
            item.add_marker(pytest.mark.jobs)
        if getattr(item, "module", None) is not None:
            modules[item.path.name] = item.module
    for module_name, module in modules.items():
        named = JOBS_MODULES.get(module_name, set()) | JOBS_TESTS.get(module_name, set())
        gone = sorted(name for name in named if not callable(getattr(module, name, None)))
        if gone:
            warnings.warn(pytest.PytestWarning(
                f"tests/conftest.py names tests that {module_name} no longer has: {', '.join(gone)}"))
