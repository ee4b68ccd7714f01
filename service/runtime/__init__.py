"""What ships: everything the container image and the Lambda zip run besides the pure core.

Settings, ports, request accounting, the composition roots' shared pieces, the one effects path of a
batch, the boto3 adapters, the Kubernetes-mode shard consumer, the Lambda-mode batch and window
processors and the MQTT bridge. Nothing here imports ``service.tools``, ``service.cli`` or the
simulator (import-linter contracts in ``pyproject.toml``).
"""
