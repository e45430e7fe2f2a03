"""Per-call cost of @opentally.log_usage against a bare call and against segment-analytics-python's
track(), in one process, both clients sending to the same `opentally serve` on loopback.

Each measurement times batches of CALLS calls and flushes between batches (outside the timing),
so both clients always run with room in their queues: the cost measured is recording an event,
not dropping one. Prints one JSON object.

Usage: python benches/python_overhead.py COLLECTOR_URL WRITE_KEY
"""

import json
import statistics
import sys
import time

import opentally
from segment.analytics.client import Client

CALLS = 500
ROUNDS = 200


def per_call(fn, flush=None):
    samples = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for i in range(CALLS):
            fn(i)
        samples.append((time.perf_counter() - t0) / CALLS)
        if flush:
            flush()
    return statistics.median(samples)


def main():
    url, key = sys.argv[1], sys.argv[2]
    opentally.init("bench", write_key=key, endpoint=url, notice=False)

    def bare(x):
        return x

    @opentally.log_usage("bench_call")
    def decorated(x):
        return x

    @opentally.log_usage("bench_call", metadata_from_kwargs=["method"])
    def with_metadata(x, method="cbpe"):
        return x

    segment = Client(write_key=key, host=url, max_queue_size=100_000, upload_size=100)

    def seg_track(i):
        segment.track(anonymous_id="install-1", event="bench_call", properties={"i": i})

    results = {}
    results["bare_ns"] = per_call(bare) * 1e9
    results["log_usage_ns"] = per_call(decorated, lambda: opentally.flush(5.0)) * 1e9
    results["log_usage_with_metadata_ns"] = per_call(with_metadata, lambda: opentally.flush(5.0)) * 1e9
    results["opentally_track_ns"] = per_call(lambda i: opentally.track("bench_call", i=i), lambda: opentally.flush(5.0)) * 1e9
    results["segment_track_ns"] = per_call(seg_track, segment.flush) * 1e9
    segment.shutdown()
    results["log_usage_overhead_ns"] = results["log_usage_ns"] - results["bare_ns"]
    results["segment_over_log_usage_overhead"] = results["segment_track_ns"] / results["log_usage_overhead_ns"]
    results["segment_over_opentally_track"] = results["segment_track_ns"] / results["opentally_track_ns"]
    st = opentally.status()
    results["opentally_counters"] = st.counters
    print(json.dumps(results))


if __name__ == "__main__":
    main()
