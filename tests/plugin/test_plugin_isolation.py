"""aioims.testing as a pytest plugin: every test that uses the emulator
starts on a clean account; the marker and the ini option keep state; users
are the emulator's own User records.  Runs inner pytest sessions (pytester)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aioims.testing import EmulatorProcess, start_emulator_process

pytest_plugins = ["pytester"]

INNER = '''
import pytest

from aioims import ImageSpec
from aioims.emulator.identity import DEFAULT_USERS, User

pytest_plugins = ["aioims.testing"]

FAULT = {"rules": [{"endpoint": "get_image", "error": {"code": "IMG.Internal.Error"},
                    "times": 100}]}


async def count(ims):
    return (await ims.list_private_images(current=1, size=10)).total


async def test_1_leaves_an_image_and_faults(ims, ims_emulator):
    await ims.create_private_image(ImageSpec(name="left-over"))
    ims_emulator.set_faults(FAULT)
    ims_emulator.set_s3_faults({"rules": [{"action": "error", "status": 503, "times": 5}]})
    ims_emulator.admin("POST", "/_emulator/users", {"token": "token-dave", "user_name": "dave",
        "user_id": "7000000000000000404", "tenant_id": "7000000000000000004",
        "department_id": "7000000000000000044"})
    assert await count(ims) == 1


async def test_2_starts_clean(ims, ims_emulator):
    assert await count(ims) == 0
    assert ims_emulator.admin("GET", "/_emulator/faults")["rules"] == []
    assert "dave" not in ims_emulator.users


@pytest.mark.ims_shared_state
async def test_3_shared_creates(ims):
    await ims.create_private_image(ImageSpec(name="shared-1"))
    assert await count(ims) == 1


@pytest.mark.ims_shared_state
async def test_4_shared_sees_it(ims):
    assert await count(ims) == 1


def test_5_users_are_the_emulator_records(ims_emulator):
    alice = ims_emulator.user("alice")
    assert type(alice) is User and alice == DEFAULT_USERS[0]
    assert ims_emulator.user(alice.token) is alice and ims_emulator.user(alice.user_id) is alice
    assert alice.tenant_id == "7000000000000000001" and alice["tenantId"] == alice.tenant_id


def test_6_no_emulator_no_reset():
    pass
'''


# The inner sessions borrow one emulator started here (starting one per inner
# session would cost seconds each): the inner module overrides ``ims_emulator``.
BORROW = '''
import os
from pathlib import Path

from aioims.testing import EmulatorProcess


@pytest.fixture(scope="session")
def ims_emulator():
    emulator = EmulatorProcess(None, os.environ["AIOIMS_OUTER_EMULATOR"], Path("."))
    emulator.refresh_users()
    return emulator
'''


@pytest.fixture(scope="module")
def outer_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    emulator = start_emulator_process(tmp_path_factory.mktemp("outer") / "data")
    try:
        yield emulator
    finally:
        emulator.stop()


def _run(
    pytester: pytest.Pytester, emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch,
    ini: str,
) -> pytest.RunResult:  # fmt: skip
    emulator.reset()
    monkeypatch.setenv("AIOIMS_OUTER_EMULATOR", emulator.url)
    pytester.makeini(
        f"[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n{ini}"
    )
    pytester.makepyfile(test_inner=INNER + BORROW)
    return pytester.runpytest_inprocess("-p", "no:randomly", "-p", "no:cacheprovider", "-q")


def test_each_test_gets_a_clean_account_unless_marked(
    pytester: pytest.Pytester, outer_emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(pytester, outer_emulator, monkeypatch, "")
    result.assert_outcomes(passed=6)


def test_ini_option_keeps_state_between_tests(
    pytester: pytest.Pytester, outer_emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(pytester, outer_emulator, monkeypatch, "ims_emulator_reset = false")
    # test_2 now sees test_1's image and faults; test_4 sees two images
    result.assert_outcomes(passed=3, failed=3)
    failed = {r.nodeid.split("::")[-1] for r in result.reprec.getreports("pytest_runtest_logreport")
              if r.failed}  # fmt: skip
    assert failed == {"test_2_starts_clean", "test_3_shared_creates", "test_4_shared_sees_it"}
