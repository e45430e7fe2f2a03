"""OpenTally: privacy-first usage telemetry for open-source Python libraries.

    import opentally
    opentally.init(app="nannyml", version=__version__, write_key="otw_…",
                   endpoint="https://telemetry.example.org", disable_env="NML_DISABLE_USAGE_LOGGING")

    @opentally.log_usage("fit", metadata_from_kwargs=["method"])
    def fit(self, data, method="cbpe"): ...

Any refusal wins: DO_NOT_TRACK=1, OPENTALLY_TELEMETRY=off, the app's own variables, a .env file,
`opentally opt-out --app nannyml`, the administrator's policy, or `opentally.disable()`.
OPENTALLY_LOG=1 prints every event exactly as it is sent.
"""

from __future__ import annotations

import os
import sys
from time import perf_counter

from . import _opentally as _ext

__version__ = "0.1.0"
__all__ = [
    "init", "track", "log_usage", "span", "suppressed", "disable", "enable", "opt_out", "opt_in",
    "forget", "export", "status", "flush", "Status", "load_ipython_extension",
]

_flush_timeout = 1.0

# Decorated calls are collected here and handed to Rust in groups: one call into the extension
# per group instead of one per call. A call after a quiet half second is handed over at once, so
# an occasional call never waits; at most the last calls of a burst wait for the next call, a
# flush, status(), or exit.
_buf = []
_BUF_MAX = 64
_deadline = 0.0
# True while telemetry is on or local and no suppressed scope is open in any thread; otherwise
# every call takes the direct path, which checks consent and suppression in Rust.
_fast = False
_suppressed_scopes = 0


def _refresh():
    global _fast
    _fast = _ext.mode() in ("on", "local") and _suppressed_scopes == 0


def _drain(now=None):
    global _deadline
    if now is None:
        now = perf_counter()
    _deadline = now + 0.5
    if not _buf:
        return
    # Other threads may append while this runs: take what is there, remove exactly that.
    items = _buf[:]
    del _buf[:len(items)]
    _ext.drain(items, now)


def _notebook():
    if "google.colab" in sys.modules:
        return "colab"
    if "ipykernel" in sys.modules:
        return "vscode" if "VSCODE_PID" in os.environ else "jupyter"
    return None


def _flush_at_exit():
    _drain()
    _ext.flush(_flush_timeout)


class _ForkHook:
    """An object for multiprocessing's after-fork registry, which holds weak references."""


_fork_hook = _ForkHook()


def _flush_at_worker_exit(_hook):
    sys.modules["multiprocessing.util"].Finalize(None, _flush_at_exit, exitpriority=0)


def _forget_parents_calls():
    # The parent hands over its own collected calls; the child's copy must not be sent again.
    del _buf[:]


def _after_fork_in_child():
    # multiprocessing workers leave through os._exit, which skips atexit. Their bootstrap clears
    # exit finalizers right after the fork and then runs its after-fork hooks; a hook registered
    # now adds a finalizer that flushes, within the same bound, when the worker ends.
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util.register_after_fork(_fork_hook, _flush_at_worker_exit)


def init(app, version=None, write_key="", endpoint="", default="on", disable_env=None,
         enable_env=None, notice=None, off_in_ci=False, flush_timeout=1.0):
    """Starts OpenTally for this process; the first call wins. Returns whether this call started it.

    default: "on" (opt-out: on until refused) or "off" (opt-in: off until accepted).
    disable_env: variable(s) whose presence turns telemetry off (NannyML style).
    enable_env: variable(s) whose false value turns it off and true value consents (Flower style).
    notice: None for OpenTally's first-run notice, a string for your own, False for none.
    flush_timeout: the longest the interpreter waits at exit for events to leave (seconds).
    """
    global _flush_timeout
    as_list = lambda v: [v] if isinstance(v, str) else list(v or [])  # noqa: E731
    started = _ext.init(
        app, version=version, write_key=write_key, endpoint=endpoint, default=default,
        disable_env=as_list(disable_env), enable_env=as_list(enable_env),
        notice=notice if isinstance(notice, str) else None, notice_off=notice is False,
        flush_timeout=float(flush_timeout), off_in_ci=bool(off_in_ci),
        runtime_version="%d.%d.%d" % sys.version_info[:3],
        implementation=sys.implementation.name,
        virtualenv=sys.prefix != getattr(sys, "base_prefix", sys.prefix),
        conda="CONDA_PREFIX" in os.environ or os.path.isdir(os.path.join(sys.prefix, "conda-meta")),
        notebook=_notebook(), library_version=__version__,
    )
    if started:
        _flush_timeout = float(flush_timeout)
        import atexit

        atexit.register(_flush_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_forget_parents_calls)
            os.register_at_fork(after_in_child=_after_fork_in_child)
    _refresh()
    return started


def track(event, **props):
    """Records an event. Values: str, int, float, bool; any other object is sent as its class name."""
    _ext.track(event, props or None)


def flush(timeout=1.0):
    """Waits at most `timeout` seconds (without holding the GIL) for queued events to leave."""
    _drain()
    return _ext.flush(float(timeout))


def disable():
    """Turns telemetry off for this process; queued events are forgotten."""
    del _buf[:]
    _ext.disable()
    _refresh()


def enable():
    """Consents from code for this process; a user's refusal still wins."""
    _ext.enable()
    _refresh()


def opt_out(forget=False):
    """Saves the user's refusal for this app (what `opentally opt-out --app APP` writes). With
    ``forget=True`` it also erases what was already sent and replaces the install id (what
    `opentally opt-out --app APP --forget` does), returning what was done; the refusal is saved
    first, and stays if the collector cannot be reached (OSError is raised then)."""
    del _buf[:]
    _ext.opt_out()
    _refresh()
    if forget:
        return _forget_sent()


def opt_in():
    """Saves the user's consent for this app; a refusal elsewhere still wins."""
    _ext.opt_in()
    _refresh()


def forget():
    """Erases everything this app's collector stores under this machine's install id, then
    replaces the id (what `opentally forget --app APP` does). Telemetry stays off for the rest of
    this process; the next one sends under the new, unrelated id. Returns what was done; raises
    OSError, changing nothing, when the collector did not confirm the erasure."""
    del _buf[:]
    try:
        return _ext.forget()
    finally:
        _refresh()


_forget_sent = forget


def export():
    """Every event this app's collector stores under this machine's install id, as a dict
    ``{"ok": True, "events": [...]}``; raises OSError when the collector cannot be asked."""
    import json

    return json.loads(_ext.export())


class Status:
    """What OpenTally is doing and why: `str(status)` for people, attributes for code."""

    def __init__(self, text, data):
        self._text = text
        self.data = data
        decision = data["decision"]
        self.mode = decision["mode"]
        self.decided_by = decision["decided_by"]
        self.sources = decision["sources"]
        self.install_id = data["install_id"]
        self.counters = data["counters"]
        # The collector's last remote control for this app, as remembered here (or None).
        self.control = data.get("control")

    def __str__(self):
        return self._text

    def __repr__(self):
        return "<opentally.Status mode=%s decided_by=%s>" % (self.mode, self.decided_by)


def status():
    """The status, or None before `init`."""
    _drain()
    got = _ext.status()
    if got is None:
        return None
    import json

    return Status(got[0], json.loads(got[1]))


class suppressed:
    """Nothing tracked on this thread inside `with opentally.suppressed():` is recorded."""

    __slots__ = ()

    def __enter__(self):
        global _suppressed_scopes, _fast
        _suppressed_scopes += 1
        _fast = False
        _ext.suppress_begin()
        return self

    def __exit__(self, *exc):
        global _suppressed_scopes
        _ext.suppress_end()
        _suppressed_scopes -= 1
        _refresh()
        return False


def _error_type(exc):
    cls = type(exc)
    module = getattr(cls, "__module__", "") or ""
    name = cls.__qualname__ if module == "builtins" else "%s.%s" % (module, cls.__qualname__)
    # Only a class name may leave: keep the characters the collector accepts in error_type.
    return "".join(c if (c.isalnum() and c.isascii()) or c in "_.:" else "_" for c in name) or "Exception"


_BUCKETS = [(10 ** i, 10 ** (i + 1)) for i in range(18)]


def _bucket(value):
    """A metadata value made safe to send: booleans as they are, numbers as an order of magnitude,
    short identifier-like strings (enum values) as they are; any other value as its class name."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if value != value:
            return "nan"
        if value < 0:
            return "<0"
        if value < 1:
            return "0" if value == 0 else "<1"
        for low, high in _BUCKETS:
            if value < high:
                return "%d-%d" % (low, high)
        return ">=1e18"
    if isinstance(value, str):
        if 0 < len(value) <= 64 and all((c.isalnum() and c.isascii()) or c in "_.-" for c in value):
            return value
        return None
    return type(value).__name__


class span:
    """Times a block: `with opentally.span("export_report", fmt="html"): ...` records duration_ms,
    outcome, and the exception's class name (never its message); exceptions pass through."""

    __slots__ = ("_event", "_props", "_start")

    def __init__(self, event, **props):
        self._event = event
        self._props = props or None
        self._start = 0.0

    def __enter__(self):
        self._start = perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb):
        ms = (perf_counter() - self._start) * 1000.0
        _ext.track_call(self._event, ms, None if exc is None else _error_type(exc), self._props)
        return False


def _metadata_reader(fn, from_self, from_kwargs):
    """Builds `read(args, kwargs) -> dict | None` for the decorator, resolving argument positions
    and defaults once, at decoration time, not per call."""
    if not from_self and not from_kwargs:
        return None
    import inspect

    params = list(inspect.signature(fn).parameters.values())
    where = {}
    for name in from_kwargs:
        for i, p in enumerate(params):
            if p.name == name:
                default = None if p.default is inspect.Parameter.empty else p.default
                where[name] = (i if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) else None, default)
                break
        else:
            where[name] = (None, None)

    def read(args, kwargs):
        out = {}
        if from_self and args:
            obj = args[0]
            for attr in from_self:
                out[attr] = _bucket(getattr(obj, attr, None))
        for name, (index, default) in where.items():
            if name in kwargs:
                v = kwargs[name]
            elif index is not None and index < len(args):
                v = args[index]
            else:
                v = default
            out[name] = _bucket(v)
        return {k: v for k, v in out.items() if v is not None} or None

    return read


def log_usage(event=None, metadata_from_self=(), metadata_from_kwargs=()):
    """Decorates a function (plain, async, generator or async generator) to record each call:
    duration_ms, outcome, the exception's class name, and the named metadata, bucketed.

    The wrapped function keeps its name, docstring, signature and nature; exceptions are re-raised
    untouched. Usable as `@log_usage`, `@log_usage()` or `@log_usage("event_name", ...)`.
    """
    if callable(event):
        return log_usage()(event)

    def decorate(fn):
        import functools
        import inspect

        handle = _ext.register(event or fn.__name__)
        append = _buf.append
        meta = _metadata_reader(fn, tuple(metadata_from_self), tuple(metadata_from_kwargs))
        recording, call = _ext.recording, _ext.call

        # Every variant does the same: time the call, then hand the handle, the duration, the
        # exception's class name (if any) and the metadata to `call`, which returns at once when
        # telemetry is off. Metadata is read only when it will be recorded.
        if inspect.isasyncgenfunction(fn):
            async def wrapper(*args, **kwargs):
                start = perf_counter()
                try:
                    async for item in fn(*args, **kwargs):
                        yield item
                except BaseException as exc:
                    call(handle, (perf_counter() - start) * 1000.0, _error_type(exc),
                         meta(args, kwargs) if meta is not None and recording() else None)
                    raise
                call(handle, (perf_counter() - start) * 1000.0, None,
                     meta(args, kwargs) if meta is not None and recording() else None)
        elif inspect.iscoroutinefunction(fn):
            async def wrapper(*args, **kwargs):
                start = perf_counter()
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    call(handle, (perf_counter() - start) * 1000.0, _error_type(exc),
                         meta(args, kwargs) if meta is not None and recording() else None)
                    raise
                call(handle, (perf_counter() - start) * 1000.0, None,
                     meta(args, kwargs) if meta is not None and recording() else None)
                return result
        elif inspect.isgeneratorfunction(fn):
            def wrapper(*args, **kwargs):
                start = perf_counter()
                try:
                    result = yield from fn(*args, **kwargs)
                except BaseException as exc:
                    call(handle, (perf_counter() - start) * 1000.0, _error_type(exc),
                         meta(args, kwargs) if meta is not None and recording() else None)
                    raise
                call(handle, (perf_counter() - start) * 1000.0, None,
                     meta(args, kwargs) if meta is not None and recording() else None)
                return result
        elif meta is None:
            # The common case, kept short: a plain function without metadata.
            def wrapper(*args, **kwargs):
                start = perf_counter()
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    call(handle, (perf_counter() - start) * 1000.0, _error_type(exc), None)
                    raise
                if _fast:
                    now = perf_counter()
                    append((handle, start, now))
                    if len(_buf) >= _BUF_MAX or now >= _deadline:
                        _drain(now)
                else:
                    call(handle, (perf_counter() - start) * 1000.0, None, None)
                return result
        else:
            def wrapper(*args, **kwargs):
                start = perf_counter()
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    call(handle, (perf_counter() - start) * 1000.0, _error_type(exc),
                         meta(args, kwargs) if recording() else None)
                    raise
                if _fast:
                    now = perf_counter()
                    append((handle, start, now, None, meta(args, kwargs)))
                    if len(_buf) >= _BUF_MAX or now >= _deadline:
                        _drain(now)
                else:
                    call(handle, (perf_counter() - start) * 1000.0, None,
                         meta(args, kwargs) if recording() else None)
                return result

        return functools.wraps(fn)(wrapper)

    return decorate


def load_ipython_extension(ipython):
    """`%load_ext opentally` adds the `%%opentally_ignore` cell magic: nothing a cell under it does
    is recorded."""

    def opentally_ignore(line, cell):
        with suppressed():
            ipython.run_cell(cell)

    ipython.register_magic_function(opentally_ignore, magic_kind="cell", magic_name="opentally_ignore")
