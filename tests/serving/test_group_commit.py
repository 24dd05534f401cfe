"""Group commit: concurrent submissions share batches, each gets its own result only after its
batch ran, batches never overlap, and a failing batch fails every caller in it."""
import threading
import time

import pytest

from divqat.serving.group_commit import GroupCommit


def test_concurrent_submissions_share_batches_and_get_their_own_results():
    batches, running, overlaps = [], [], []

    def run_batch(items):
        running.append(1)
        overlaps.append(len(running) > 1)
        time.sleep(0.02)  # a commit's fsync: the others queue meanwhile
        batches.append(list(items))
        running.pop()
        return [item * 10 for item in items]

    group = GroupCommit(run_batch)
    results = {}

    def client(i):
        for j in range(5):
            item = 100 * i + j
            results[item] = group.submit(item)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {item: item * 10 for item in results} and len(results) == 40
    assert sorted(x for b in batches for x in b) == sorted(results)  # each item in exactly one batch
    assert not any(overlaps) and len(batches) < 40 and max(map(len, batches)) > 1


def test_a_failing_batch_fails_each_of_its_callers_and_the_next_batch_runs():
    def run_batch(items):
        if "bad" in items:
            raise RuntimeError("disk full")
        return items

    group = GroupCommit(run_batch)
    with pytest.raises(RuntimeError, match="disk full"):
        group.submit("bad")
    assert group.submit("good") == "good"
