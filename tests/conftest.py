"""Options shared by every test suite."""

from __future__ import annotations

import pytest

AWS_BACKENDS = ("moto", "localstack", "aws")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--aws-backend",
        choices=AWS_BACKENDS,
        default="moto",
        help="AWS API endpoint for integration tests: embedded moto server (default), LocalStack or real AWS",
    )
