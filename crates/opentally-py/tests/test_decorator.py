"""The decorator, span and suppressed scope in this process, delivering to a real collector."""

import asyncio
import inspect
import sys

import pytest

import opentally


@pytest.fixture(scope="module", autouse=True)
def started(collector):
    opentally.init("pytest-app", version="9.9.9", write_key=collector.key, endpoint=collector.url, notice=False)
    yield


def delivered(collector, event, n=1):
    assert opentally.flush(5.0)
    got = [e for e in collector.events(wait_for=0) if e["event"] == event]
    return got


class Estimator:
    chunk_size = 5000

    @opentally.log_usage("est_fit", metadata_from_self=["chunk_size"], metadata_from_kwargs=["method", "rows"])
    def fit(self, data, method="cbpe", rows=0):
        """Fit on `data`."""
        if data == "bad":
            raise ValueError("secret message /home/ana/data.csv")
        return "fitted"


def test_signature_docstring_and_wrapped_are_kept():
    fit = Estimator.fit
    assert fit.__name__ == "fit"
    assert fit.__doc__ == "Fit on `data`."
    assert str(inspect.signature(fit)) == "(self, data, method='cbpe', rows=0)"
    assert inspect.unwrap(fit) is fit.__wrapped__


def test_calls_are_recorded_with_bucketed_metadata(collector):
    assert Estimator().fit("ok", rows=123456) == "fitted"
    e = delivered(collector, "est_fit")[-1]
    assert e["properties"]["outcome"] == "ok"
    assert e["properties"]["method"] == "cbpe", "defaults are read too"
    assert e["properties"]["rows"] == "100000-1000000", "numbers leave as an order of magnitude"
    assert e["properties"]["chunk_size"] == "1000-10000"
    assert e["properties"]["duration_ms"] >= 0
    assert e["context"]["app"] == {"name": "pytest-app", "version": "9.9.9"}
    assert e["context"]["runtime"]["name"] == "python"
    assert e["context"]["runtime"]["version"] == "%d.%d.%d" % sys.version_info[:3]


def test_exceptions_pass_through_untouched_and_only_their_class_leaves(collector):
    with pytest.raises(ValueError) as info:
        Estimator().fit("bad", method="dle")
    assert str(info.value) == "secret message /home/ana/data.csv"
    frames = [f.name for f in __import__("traceback").extract_tb(info.value.__traceback__)]
    assert frames[-1] == "fit", "the traceback still ends where the error was raised"
    e = [x for x in delivered(collector, "est_fit") if x["properties"]["outcome"] == "error"][-1]
    assert e["properties"]["error_type"] == "ValueError"
    assert "secret" not in str(e) and "/home/ana" not in str(e)


def test_the_same_exception_object_is_raised():
    err = KeyError("k")

    @opentally.log_usage
    def boom():
        raise err

    with pytest.raises(KeyError) as info:
        boom()
    assert info.value is err


def test_async_functions_stay_async(collector):
    @opentally.log_usage("async_fit")
    async def afit(x):
        await asyncio.sleep(0)
        return x * 2

    assert inspect.iscoroutinefunction(afit)
    assert asyncio.run(afit(21)) == 42
    assert delivered(collector, "async_fit")[-1]["properties"]["outcome"] == "ok"


def test_generators_stay_generators_and_keep_their_return_value(collector):
    @opentally.log_usage("gen")
    def gen(n):
        for i in range(n):
            yield i
        return "finished"

    assert inspect.isgeneratorfunction(gen)

    def consume():
        result = yield from gen(3)
        return result

    g = consume()
    assert [next(g), next(g), next(g)] == [0, 1, 2]
    with pytest.raises(StopIteration) as stop:
        next(g)
    assert stop.value.value == "finished"
    assert delivered(collector, "gen")[-1]["properties"]["outcome"] == "ok"


def test_async_generators_stay_async_generators(collector):
    @opentally.log_usage("agen")
    async def agen(n):
        for i in range(n):
            yield i

    assert inspect.isasyncgenfunction(agen)

    async def collect():
        return [i async for i in agen(3)]

    assert asyncio.run(collect()) == [0, 1, 2]
    assert delivered(collector, "agen")[-1]["properties"]["outcome"] == "ok"


def test_span_records_the_exception_class_and_lets_it_through(collector):
    with pytest.raises(OSError):
        with opentally.span("export_report", fmt="html"):
            raise FileNotFoundError("/private/path")
    e = delivered(collector, "export_report")[-1]
    assert (e["properties"]["error_type"], e["properties"]["fmt"]) == ("FileNotFoundError", "html")


def test_suppressed_records_nothing_inside(collector):
    with opentally.suppressed():
        opentally.track("hidden_cell")
    opentally.track("visible_cell")
    assert delivered(collector, "visible_cell")
    assert delivered(collector, "hidden_cell") == []


def test_track_sends_objects_only_as_their_class_name(collector):
    class DataFrame:
        def __repr__(self):
            return "secret rows"

    opentally.track("typed", frame=DataFrame(), n=3, ratio=0.5, flag=True, label="x")
    p = delivered(collector, "typed")[-1]["properties"]
    assert p == {"frame": "DataFrame", "n": 3, "ratio": 0.5, "flag": True, "label": "x"}


def test_status_explains_itself():
    s = opentally.status()
    assert s.mode == "on" and s.decided_by == "default"
    assert "telemetry for pytest-app: on (decided by default)" in str(s)
    assert s.counters["queued"] >= 1


def test_ipython_cell_magic_records_nothing_in_its_cell(collector):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "opentally")
    shell.run_cell_magic("opentally_ignore", "", "import opentally\nopentally.track('magic_hidden')")
    shell.run_cell("import opentally\nopentally.track('magic_visible')")
    assert delivered(collector, "magic_visible")
    assert delivered(collector, "magic_hidden") == []


def test_collected_calls_keep_the_time_they_happened(collector):
    """Calls in a burst are handed to Rust in groups; each event still carries its own time."""
    import datetime
    import time

    @opentally.log_usage("burst")
    def step():
        return None

    step()  # after a quiet moment: handed over at once
    step()  # within half a second: collected
    called = datetime.datetime.now(datetime.timezone.utc)
    time.sleep(0.4)
    events = delivered(collector, "burst")
    stamps = sorted(datetime.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")) for e in events)
    assert len(stamps) == 2
    assert abs((stamps[-1] - called).total_seconds()) < 0.2, (stamps, called)


def test_a_suppressed_scope_in_one_thread_does_not_hide_other_threads(collector):
    import threading

    @opentally.log_usage("threaded")
    def job(tag):
        return tag

    inside = threading.Event()
    release = threading.Event()

    def quiet():
        with opentally.suppressed():
            job("hidden")
            inside.set()
            release.wait(5)

    t = threading.Thread(target=quiet)
    t.start()
    inside.wait(5)
    job("shown")
    release.set()
    t.join()
    assert len(delivered(collector, "threaded")) == 1
