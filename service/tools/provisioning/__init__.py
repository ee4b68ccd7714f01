"""Deploying ``infra/template.yaml`` to any endpoint and verifying what it built.

``provision_stack`` is the entry point used by ``vitalstream provision``, ``vitalstream local up``
and the tests.
"""

from __future__ import annotations

from service.tools.provisioning.deploy import ProvisionError, ProvisionResult, provision_stack

__all__ = ["ProvisionError", "ProvisionResult", "provision_stack"]
