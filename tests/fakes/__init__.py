"""Test doubles shared by the test suite (importable as ``fakes``: ``tests/`` is
on ``sys.path`` through ``tests/conftest.py``).

* :mod:`fakes.fake_s3` — :class:`~fakes.fake_s3.FakeS3`, an in-memory S3 with
  aiobotocore's client surface, scripted faults and a request log, plugged
  into a transfer with ``TransferConfig(s3_client_factory=fake.client_factory)``;
* :mod:`fakes.clock` — :class:`~fakes.clock.FakeClock` for
  ``RetryPolicy(clock=...)`` and FakeS3's credential expiry;
* :mod:`fakes.sink` — a zero-cost S3 sink child process for big-data tests.
"""
