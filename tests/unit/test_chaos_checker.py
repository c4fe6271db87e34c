"""The chaos run's pure parts: the seeded schedule and the checker."""

from __future__ import annotations

import itertools

from loadtests.chaos import checker, schedule
from loadtests.chaos.load import Record


def test_the_same_seed_gives_the_same_schedule() -> None:
    one = schedule.draw(7, 600, instances=3, nats_nodes=3)
    assert one == schedule.draw(7, 600, instances=3, nats_nodes=3)
    assert one != schedule.draw(8, 600, instances=3, nats_nodes=3)


def test_ten_minutes_hold_at_least_fifty_faults_that_never_overlap() -> None:
    faults = schedule.draw(1, 600, instances=3, nats_nodes=3)
    assert len(faults) >= 50
    for before, after in itertools.pairwise(faults):
        assert before.at + before.duration + schedule.SETTLE[0] <= after.at + 1e-6
    assert faults[-1].at + faults[-1].duration <= 600


def test_a_short_run_sees_every_kind_and_only_existing_targets() -> None:
    faults = schedule.draw(3, 75, instances=3, nats_nodes=3)
    assert {f.kind for f in faults[:4]} == set(schedule.KINDS)
    assert all(0 <= f.target < 3 for f in faults)
    single = schedule.draw(3, 600, instances=2, nats_nodes=1)
    assert "nats-kill" not in {f.kind for f in single}


def _record() -> Record:
    record = Record(t0=0.0)
    record.stream_of = {"a": "wf", "b": "wf"}
    for seq in (1, 2, 3):
        record.sent[("p", seq)] = float(seq)
        record.acked[("p", seq)] = ("wf", seq + 0.1)
    record.gaps = {"a": [], "b": []}
    return record


def test_a_clean_record_passes() -> None:
    record = _record()
    for name in ("a", "b"):
        record.deliveries[name] = [(s + 0.2, "p", s, str(s)) for s in (1, 2, 3)]
    verdict = checker.check(record, [])
    assert verdict.ok
    assert (verdict.total.acked, verdict.total.delivered, verdict.total.subscribers) == (3, 6, 2)


def test_lost_duplicated_and_reordered_events_are_counted_per_subscriber() -> None:
    record = _record()
    record.deliveries["a"] = [(1.2, "p", 1, "1"), (3.2, "p", 3, "3")]  # 2 lost
    record.deliveries["b"] = [(1.2, "p", 1, "1"), (3.2, "p", 3, "3"), (3.3, "p", 2, "2"),
                              (3.4, "p", 3, "4")]  # fmt: skip
    verdict = checker.check(record, [])
    assert not verdict.ok
    assert (verdict.total.lost, verdict.total.duplicated, verdict.total.reordered) == (1, 1, 1)
    assert verdict.examples


def test_an_unacknowledged_event_may_be_missing_and_may_be_delivered() -> None:
    record = _record()
    record.sent[("p", 4)] = 4.0  # failed: no ack
    for name in ("a", "b"):
        record.deliveries[name] = [(s + 0.2, "p", s, str(s)) for s in (1, 2, 3)]
    record.deliveries["b"].append((4.2, "p", 4, "4"))
    assert checker.check(record, []).ok


def test_an_unacknowledged_event_arriving_late_is_no_reorder() -> None:
    record = _record()
    record.sent[("p", 4)] = 4.0  # timed out on a paused instance ...
    record.sent[("p", 5)] = 4.5
    record.acked[("p", 5)] = ("wf", 4.6)  # ... so the producer went on through another one
    for name in ("a", "b"):
        record.deliveries[name] = [(s + 0.2, "p", s, str(s)) for s in (1, 2, 3, 5)]
        record.deliveries[name].append((6.0, "p", 4, "6"))  # the paused instance woke up
    assert checker.check(record, []).ok


def test_recovery_is_the_slowest_subscribers_first_new_event_after_the_fault() -> None:
    record = _record()
    record.deliveries["a"] = [(1.2, "p", 1, "1"), (2.2, "p", 2, "2"), (3.2, "p", 3, "3")]
    record.deliveries["b"] = [(1.2, "p", 1, "1"), (2.9, "p", 2, "2"), (3.2, "p", 3, "3")]
    fault = {"kind": "instance-kill", "target": 1, "at": 1.5, "until": 1.8}
    verdict = checker.check(record, [fault])
    # b received event 2 (sent at 2.0, after the fault) at 2.9: 1.4 s after the fault.
    assert verdict.per_fault[0]["recovery"] == 1.4
    assert verdict.recovery["instance-kill"]["p99"] == 1.4
    late = {"kind": "nats-kill", "target": 0, "at": 3.5, "until": 4.0}
    assert checker.check(record, [late]).recovery["nats-kill"]["unrecovered"] == 1


def test_percentile_is_nearest_rank() -> None:
    assert checker.percentile([], 50) is None
    assert checker.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert checker.percentile([float(i) for i in range(1, 101)], 99) == 99.0
