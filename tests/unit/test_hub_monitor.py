from __future__ import annotations

from edge_toolkit.monitor import Fleet, render


def test_fleet_rows_track_reports_and_count_seq_gaps() -> None:
    now = [100.0]
    fleet = Fleet(clock=lambda: now[0])
    report = {
        "status": "healthy",
        "system": {"cpu_percent": 12.5, "memory": {"percent": 40.0}},
        "models": [{"name": "mlp", "version": "2"}],
    }
    for seq in (1, 2, 5, 4, 6):  # 3 never arrives; 4 arrives late and is not a gap
        fleet.observe_report("cam-1", {**report, "seq": seq})
    fleet.observe_online("cam-2", False)
    now[0] = 103.0
    rows = fleet.snapshot()
    assert [r["device_id"] for r in rows] == ["cam-1", "cam-2"]
    cam = rows[0]
    assert cam["seq"] == 6 and cam["gaps"] == 2  # 3 and 4 were missing when 5 came
    assert cam["models"] == ["mlp:2"] and cam["cpu_percent"] == 12.5 and cam["last_seen_s"] == 3.0
    assert rows[1]["online"] is False and rows[1]["status"] is None
    assert render(fleet).row_count == 2
