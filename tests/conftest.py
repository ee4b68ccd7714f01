"""Options shared by every test suite."""

from __future__ import annotations

import pytest

AWS_BACKENDS = ("moto", "kinesis-mock", "localstack", "aws")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--aws-backend",
        choices=AWS_BACKENDS,
        default="moto",
        help=(
            "AWS API endpoints for integration tests: embedded moto server (default); kinesis-mock for "
            "Kinesis with moto for the rest; LocalStack (needs a Docker engine); real AWS (opt-in)"
        ),
    )
