"""``simulator.pacing.paced`` in real time: no message is handed on before its send time."""

from __future__ import annotations

import time

from simulator.fleet import Fleet
from simulator.pacing import paced


def test_in_real_time_no_message_goes_out_before_its_send_time() -> None:
    start_ms = int(time.time() * 1000)
    fleet = Fleet(200, 7, start_ms, start_ms + 6_000)  # 200 devices out of step: several slices a tick
    wall_start = time.monotonic()
    handed = 0
    for sends, low, high in paced(fleet, realtime=True):
        fleet_now_ms = start_ms + (time.monotonic() - wall_start) * 1000
        # a slice goes out once its last message is due (1 ms for the clock's rounding)
        assert max(sends.send_ms[low:high]) <= fleet_now_ms + 1
        handed += high - low
    assert handed >= 200  # every device sent
