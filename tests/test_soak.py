"""The soak (bench/soak.py) in short: under a minute of mixed load, then nothing lost,
no operation failed, and the box holds no more open files than before it."""

from __future__ import annotations

import pytest

from bench import soak
from tests.conftest import require

# Fixed headroom, not a rate: an fd or two may be a pool connection opened late.
FD_MARGIN = 8
RSS_MARGIN_KIB = 64 << 10


@pytest.mark.timeout(240)
def test_short_soak_loses_nothing_and_leaks_no_files(tmp_path):
    require("storescu")
    report = soak.run(minutes=0.75, work=tmp_path, senders=2, warmup_s=10)
    soak.print_report(report, 0.75)  # shown by pytest when the test fails
    assert report.failures == []
    assert report.lost == []
    # The load really ran, every kind of it.
    assert report.acknowledged > 0 and report.duplicates_sent > 0
    assert report.queries > 0 and report.echoes > 0 and report.rude > 0
    assert report.indexed >= report.acknowledged
    assert report.start is not None and report.end is not None
    assert report.end.fds <= report.start.fds + FD_MARGIN
    assert report.end.rss_kib <= report.start.rss_kib + RSS_MARGIN_KIB
