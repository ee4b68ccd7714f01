"""Lambda mode with and without tumbling windows, one run: calls and item writes per 1,000 records.

    python bench/lambda_windows.py [--devices 500] [--duration 150] [--window 120]

Two demo sessions in Lambda mode (the local event source mapping + the shim, the embedded emulator,
the demo's fleet), first with ``TumblingWindowInSeconds=0`` (device states read and written every
batch), then with ``--window``. The shim's clients go through the counting proxy
(``tests/integration/fault_proxy.py``), so every figure is counted twice: from outside the process
(the proxy) and by the request metrics (``lambda_shim.handler.REQUESTS``). A window's writes are
about devices x windows the run touches, so a run shorter than a few windows overstates them. Prints;
never asserts.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lambda_shim import handler as shim
from service.tools.demo.session import DemoSession
from service.tools.emulator import use_emulator_credentials
from tests.integration.fault_proxy import FaultProxy

TABLE_OPS = ("BatchGetItem", "UpdateItem", "PutItem")


def measure(window: int, devices: int, duration_s: int) -> dict[str, float]:
    with DemoSession(2, lambda line: print(f"  {line}", file=sys.stderr)) as session:
        proxy = FaultProxy(os.environ["VITALSTREAM_ENDPOINT_URL"]).start()
        os.environ["VITALSTREAM_ENDPOINT_URL"] = proxy.url  # the shim's clients only; the ESM reads direct
        shim._runtime.cache_clear()  # rebuild the shim's clients on the proxy
        try:
            report = session.run(
                devices=devices,
                duration_ms=duration_s * 1000,
                seed=7,
                share=0.0,
                batch_size=500,
                mode="lambda",
                tumbling_window_s=window,
            )
        finally:
            proxy.stop()
    per = 1000 / max(report.sent, 1)
    table = next(t for t in proxy.item_writes if "device-state" in t)
    figures = {
        "records": float(report.sent),
        "lost": float(report.lost),
        "duplicate_effects": float(report.duplicate_effects),
        "outside: AWS calls": sum(proxy.calls.values()) * per,
        "outside: device-table item writes": proxy.item_writes[table] * per,
        "metrics: AWS calls": report.aws_calls_per_1k,
        "metrics: device-table item writes": report.dynamodb_item_writes_per_1k.get(table, 0.0),
        "S3 PutObject (outside)": proxy.calls[("s3", "PutObject")] * per,
    }
    for op in TABLE_OPS:
        figures[f"outside: dynamodb {op}"] = proxy.calls[("dynamodb", op)] * per
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--duration", type=int, default=150, help="seconds of fleet per variant")
    parser.add_argument(
        "--window", type=int, default=120, help="TumblingWindowInSeconds of the second variant"
    )
    args = parser.parse_args()
    use_emulator_credentials()
    runs = {w: measure(w, args.devices, args.duration) for w in (0, args.window)}
    print(f"per 1,000 records ({args.devices} devices, {args.duration} s, 2 shards, batch size 500)")
    print(f"{'':40} {'window 0':>12} {f'window {args.window} s':>14}")
    for name in runs[0]:
        print(f"{name:40} {runs[0][name]:>12,.1f} {runs[args.window][name]:>14,.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
