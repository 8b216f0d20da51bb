"""The slow lane: which tests get the ``slow`` marker (applied by
``tests/conftest.py``; the fast lane is ``python -m pytest -m "not slow"``)."""

from __future__ import annotations

import fnmatch

#: Node-id patterns (fnmatch, relative to the repository root; write ``*``
#: for a parameter list, ``[`` is a pattern character) of the slow lane:
#: big data, subprocess-per-call CLI and emulator-process tests, kills and
#: restarts, mypy, and every test that took more than ~2 s under load in
#: ``--durations`` (about 1 s on a quiet 2-core machine).  See docs/testing.md.
SLOW_TESTS = (
    # big data / whole harnesses
    "tests/e2e/test_transfer_memory.py::*",
    "tests/test_benchmarks_smoke.py::*",
    "tests/e2e/test_uploader.py::test_multi_part_upload_end_to_end",
    "tests/e2e/test_migrate.py::test_24_images_mixed_sources_within_the_budget",
    # real servers, whole documents, crash-and-rerun of every point
    "tests/compat/*",
    "tests/docs/test_docs_run.py::test_doc_blocks_run*",
    "tests/e2e/test_crash_windows.py::*",
    "tests/e2e/test_crash_cli.py::*",
    "tests/e2e/test_emulator_xdev.py::*",
    "tests/security/test_debug_redaction.py::test_every_cli_command_with_debug_prints_no_secret",
    "tests/security/test_admin_api.py::test_fuzz_admin_endpoints",
    "tests/cli/test_cli_newuser.py::test_emulator_command_banner_in_60_columns",
    "tests/e2e/test_migrate.py::test_upload_completed_just_before_a_crash_is_not_sent_again",
    # whole e2e files on the emulator (their rules are unit-tested on FakeS3;
    # these keep the end-to-end promises)
    "tests/e2e/test_migrate.py::*",
    "tests/e2e/test_uploader.py::*",
    "tests/e2e/test_checksums.py::test_auto_through_the_emulator_upload_image",
    "tests/e2e/test_transfer_faults.py::*",
    "tests/e2e/test_transfer_resume.py::*",
    "tests/e2e/test_emulator_flow.py::*",
    "tests/e2e/test_emulator_errors.py::*",
    "tests/e2e/test_emulator_faults.py::*",
    "tests/plugin/*",
    "tests/security/test_admin_api.py::*",
    "tests/security/test_scoped_credentials.py::*",
    "tests/cli/test_cli_newuser.py::*",
    "tests/unit/test_import_contract.py::*",
    # a subprocess per call, kills, restarts
    "tests/cli/test_cli_commands.py::*",
    "tests/cli/test_cli_errors.py::*",
    "tests/cli/test_cli_interrupt.py::*",
    "tests/cli/test_cli_emulator.py::*",
    "tests/cli/test_cli_demo.py::*",
    "tests/e2e/test_migrate_cli.py::*",
    "tests/e2e/test_emulator_process.py::*",
    "tests/e2e/test_emulator_restart.py::*",
    "tests/e2e/test_transfer_resume.py::test_killed_process_resumes",
    "tests/unit/test_lint.py::test_mypy_strict_clean",
    # several seconds each (measured)
    "tests/e2e/test_uploader.py::test_upload_image_full_flow_and_verified_download",
    "tests/e2e/test_uploader.py::test_checkpoint_resume_after_cancel_sends_only_missing_parts",
    "tests/e2e/test_uploader.py::test_transient_faults_are_retried",
    "tests/e2e/test_uploader.py::test_cancel_without_checkpoint_aborts_and_marks_failed",
    "tests/e2e/test_uploader.py::test_killed_image_raises_dedicated_error",
    "tests/e2e/test_uploader.py::test_expired_credentials_are_refreshed",
    "tests/e2e/test_uploader.py::test_download_resumes_a_partial_file_with_range",
    "tests/e2e/test_transfer_resume.py::test_vanished_upload_starts_over",
    "tests/e2e/test_transfer_resume.py::test_list_parts_is_paginated",
    "tests/e2e/test_transfer_resume.py::test_changed_file_starts_over",
    "tests/e2e/test_transfer_faults.py::test_cancel_without_checkpoint_aborts_quickly",
    "tests/e2e/test_transfer_faults.py::test_credentials_refreshed_mid_upload*",
    "tests/e2e/test_transfer_faults.py::test_transient_faults_are_retried",
    "tests/e2e/test_transfer_faults.py::test_refresh_limit_and_failing_refresh",
    "tests/e2e/test_transfer_faults.py::test_cancel_abort_override",
    "tests/e2e/test_transfer_faults.py::test_tls_private_ca",
    "tests/e2e/test_transfer_faults.py::test_non_retryable_error_gets_one_retry",
    "tests/e2e/test_transfer_faults.py::test_refresh_before_expiry",
    "tests/e2e/test_transfer_upload.py::test_multipart_40_mib",
    "tests/e2e/test_transfer_upload.py::test_shared_part_limiter",
    "tests/e2e/test_migrate.py::test_stopped_run_resumes_without_resending_parts",
    "tests/e2e/test_migrate.py::test_two_workers_share_one_ledger_and_leaving_the_block_stops",
    "tests/e2e/test_emulator_fuzz.py::test_fuzz_bodies",
    "tests/e2e/test_emulator_openapi.py::test_module_prints_the_document",
    "tests/e2e/test_emulator_openapi.py::test_valid_openapi_31",
    "tests/e2e/test_s3front.py::test_large_body_streams_with_bounded_memory",
    "tests/unit/test_retry_filter_auth_config.py::test_filter_round_trip",
    "tests/unit/test_retry_filter_auth_config.py::test_delay_bounds_property",
)


def is_slow(nodeid: str) -> bool:
    return any(fnmatch.fnmatchcase(nodeid, pattern) for pattern in SLOW_TESTS)

#: Fixtures that make every test using them slow: ``cli`` (tests/cli) runs
#: ``python -m aioims.cli`` in a subprocess per call (~1 s each on a quiet
#: machine, several under load).
SLOW_FIXTURES = frozenset({"cli"})


def is_slow_item(nodeid: str, fixturenames: object) -> bool:
    """Whether a collected test belongs to the slow lane."""
    names = fixturenames if isinstance(fixturenames, (list, tuple, set, frozenset)) else ()
    return is_slow(nodeid) or any(name in SLOW_FIXTURES for name in names)

