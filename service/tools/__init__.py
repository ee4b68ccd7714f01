"""What never ships: the developer's tools around the product.

The embedded AWS emulators and their mends, the local event source mapping, the demo, provisioning,
Lambda packaging, replay, scoring, simulation and the cost calculator. The container image and the
Lambda zip hold none of it (``tests/integration/test_image.py``, ``tests/unit/test_lambda_packaging.py``).
"""
