"""Options shared by every test suite."""

from __future__ import annotations

import pytest

AWS_BACKENDS = ("ministack", "moto", "kinesis-mock", "localstack", "aws")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--aws-backend",
        choices=AWS_BACKENDS,
        default="ministack",
        help=(
            "AWS API endpoints for integration tests: the embedded emulator's default engine, MiniStack "
            "(default); the embedded moto server; kinesis-mock for Kinesis with MiniStack for the rest; "
            "LocalStack (needs a Docker engine); real AWS (opt-in)"
        ),
    )
