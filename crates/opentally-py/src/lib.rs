//! The Python binding of the OpenTally SDK: thin functions over the Rust client. Errors become
//! Python exceptions here and nowhere else; the GIL is released whenever the call can wait
//! (flushing), and kept for the enqueue, which is faster than releasing it.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use opentally::{Config, Notice, Prop};
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

fn to_py_err(e: &std::io::Error) -> PyErr {
    PyOSError::new_err(e.to_string())
}

/// Starts OpenTally for this process. Returns False if it was already started (the first call
/// wins, as in Rust).
#[pyfunction]
#[pyo3(signature = (app, version=None, write_key="", endpoint="", default="on", disable_env=Vec::new(), enable_env=Vec::new(), notice=None, notice_off=false, flush_timeout=1.0, off_in_ci=false, runtime_version=None, implementation=None, virtualenv=None, conda=None, notebook=None, library_version=None))]
#[allow(
    clippy::too_many_arguments,
    clippy::fn_params_excessive_bools,
    clippy::needless_pass_by_value
)]
fn init(
    app: &str,
    version: Option<String>,
    write_key: &str,
    endpoint: &str,
    default: &str,
    disable_env: Vec<String>,
    enable_env: Vec<String>,
    notice: Option<String>,
    notice_off: bool,
    flush_timeout: f64,
    off_in_ci: bool,
    runtime_version: Option<String>,
    implementation: Option<String>,
    virtualenv: Option<bool>,
    conda: Option<bool>,
    notebook: Option<String>,
    library_version: Option<String>,
) -> PyResult<bool> {
    if opentally::client().is_some() {
        return Ok(false);
    }
    let mut config = Config::new(app, write_key, endpoint)
        .flush_timeout(Duration::from_secs_f64(flush_timeout.max(0.0)))
        .runtime(opentally_protocol::event::Runtime {
            name: "python".into(),
            version: runtime_version,
            implementation,
            virtualenv,
            conda,
        })
        .notebook(notebook)
        .library(
            "opentally-python",
            library_version.unwrap_or_else(|| env!("CARGO_PKG_VERSION").into()),
        );
    if let Some(v) = version {
        config = config.version(v);
    }
    match default {
        "on" | "opt-out" => {}
        "off" | "opt-in" => config = config.opt_in_default(),
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "default must be \"on\" (opt-out) or \"off\" (opt-in), not {other:?}"
            )));
        }
    }
    if off_in_ci {
        config = config.off_in_ci();
    }
    for v in disable_env {
        config = config.disable_env(v);
    }
    for v in enable_env {
        config = config.enable_env(v);
    }
    config = match (notice_off, notice) {
        (true, _) => config.notice(Notice::Off),
        (false, Some(text)) => config.notice(Notice::Text(text)),
        (false, None) => config,
    };
    // The guard's flush is replaced by the package's `atexit` handler, which has the same bound.
    std::mem::forget(opentally::init(config));
    Ok(true)
}

/// A Python value as a property: numbers, strings and booleans as they are; anything else by
/// its class name only, so that an object's contents never leave by accident.
fn prop(v: &Bound<'_, PyAny>) -> Option<Prop> {
    if v.is_none() {
        return None;
    }
    if v.is_instance_of::<PyBool>() {
        return v.extract::<bool>().ok().map(Prop::Bool);
    }
    if v.is_instance_of::<PyInt>() {
        return Some(v.extract::<i64>().map_or_else(
            |_| Prop::Float(v.extract::<f64>().unwrap_or(f64::NAN)),
            Prop::Int,
        ));
    }
    if v.is_instance_of::<PyFloat>() {
        return v.extract::<f64>().ok().map(Prop::Float);
    }
    if v.is_instance_of::<PyString>() {
        return v.extract::<String>().ok().map(Prop::Str);
    }
    v.get_type().name().ok().map(|n| Prop::Str(n.to_string()))
}

fn props(dict: Option<&Bound<'_, PyDict>>, extra: usize) -> Vec<(String, Prop)> {
    let mut out = Vec::with_capacity(dict.map_or(0, PyDictMethods::len) + extra);
    if let Some(d) = dict {
        for (k, v) in d.iter() {
            if let (Ok(k), Some(v)) = (k.extract::<String>(), prop(&v)) {
                out.push((k, v));
            }
        }
    }
    out
}

/// Records an event with properties.
#[pyfunction]
#[pyo3(signature = (event, props=None))]
fn track(event: String, props: Option<&Bound<'_, PyDict>>) {
    if let Some(c) = opentally::client() {
        c.track_owned(event, self::props(props, 0));
    }
}

/// Event names registered by decorators, kept for the life of the process so that each call
/// borrows its name instead of copying it. Bounded by the number of decorated functions.
static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());

/// Registers an event name once (at decoration time); returns its handle for [`call`].
#[pyfunction]
fn register(name: &str) -> usize {
    let mut names = NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(i) = names.iter().position(|n| *n == name) {
        return i;
    }
    names.push(Box::leak(name.to_owned().into_boxed_str()));
    names.len() - 1
}

/// The decorator's per-call entry: a registered name, the duration, the error's class name if
/// any, and metadata. Kept to the minimum, as it runs on every decorated call.
#[pyfunction]
#[pyo3(signature = (handle, duration_ms, error_type, props))]
fn call(
    handle: usize,
    duration_ms: f64,
    error_type: Option<String>,
    props: Option<&Bound<'_, PyDict>>,
) {
    let Some(c) = opentally::client() else { return };
    if !c.recording() {
        return;
    }
    let Some(name) = NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(handle)
        .copied()
    else {
        return;
    };
    c.track_cow(name.into(), timed_props(props, duration_ms, error_type));
}

/// The metadata plus the reserved properties of a timed call.
fn timed_props(
    props: Option<&Bound<'_, PyDict>>,
    duration_ms: f64,
    error_type: Option<String>,
) -> Vec<(Cow<'static, str>, Prop)> {
    let mut p: Vec<(Cow<'static, str>, Prop)> = self::props(props, 3)
        .into_iter()
        .map(|(k, v)| (k.into(), v))
        .collect();
    p.push(("duration_ms".into(), Prop::Float(duration_ms)));
    let outcome = if error_type.is_some() { "error" } else { "ok" };
    p.push(("outcome".into(), Prop::Static(outcome)));
    if let Some(t) = error_type {
        p.push(("error_type".into(), Prop::Str(t)));
    }
    p
}

/// Hands over decorated calls that the Python side collected: tuples of `(handle, start, end)`
/// or `(handle, start, end, error_type, metadata)`, where `start` and `end` are
/// `time.perf_counter()` readings around the call and `perf_now` the reading at this hand-over;
/// each event's time is placed that far in the past.
#[pyfunction]
fn drain(items: &Bound<'_, PyList>, perf_now: f64) {
    let Some(c) = opentally::client() else { return };
    if !c.recording() {
        return;
    }
    let now = SystemTime::now();
    let names = NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut events = Vec::with_capacity(items.len());
    for item in items.iter() {
        let Ok(t) = item.cast::<PyTuple>() else {
            continue;
        };
        let handle: usize = t
            .get_item(0)
            .and_then(|v| v.extract())
            .unwrap_or(usize::MAX);
        let Some(name) = names.get(handle).copied() else {
            continue;
        };
        let start: f64 = t.get_item(1).and_then(|v| v.extract()).unwrap_or(perf_now);
        let end: f64 = t.get_item(2).and_then(|v| v.extract()).unwrap_or(start);
        let duration_ms = (end - start).max(0.0) * 1000.0;
        let (error_type, meta) = if t.len() >= 5 {
            let e: Option<String> = t.get_item(3).and_then(|v| v.extract()).unwrap_or(None);
            let m = t.get_item(4).ok().filter(|m| !m.is_none());
            (e, m)
        } else {
            (None, None)
        };
        let meta = meta.as_ref().and_then(|m| m.cast::<PyDict>().ok());
        let ago = Duration::try_from_secs_f64((perf_now - start).max(0.0)).unwrap_or_default();
        events.push((
            name.into(),
            timed_props(meta, duration_ms, error_type),
            now.checked_sub(ago).unwrap_or(now),
        ));
    }
    drop(names);
    c.track_many(events);
}

/// The mode as `off`, `local` or `on` (not counting suppressed scopes), or None before `init`.
#[pyfunction]
fn mode() -> Option<String> {
    opentally::client().map(|c| c.mode().to_string())
}

/// Records a timed call: what `span` sends.
#[pyfunction]
#[pyo3(signature = (event, duration_ms, error_type=None, props=None))]
fn track_call(
    event: String,
    duration_ms: f64,
    error_type: Option<String>,
    props: Option<&Bound<'_, PyDict>>,
) {
    if let Some(c) = opentally::client() {
        c.track_cow(event.into(), timed_props(props, duration_ms, error_type));
    }
}

/// Whether an event tracked now on this thread would be recorded (lets the decorator skip its
/// own work when telemetry is off).
#[pyfunction]
fn recording() -> bool {
    opentally::client()
        .is_some_and(|c| c.mode() != opentally::Mode::Off && !opentally::Client::suppressed_here())
}

/// Waits at most `timeout` seconds for queued events to leave, without holding the GIL.
#[pyfunction]
#[pyo3(signature = (timeout=1.0))]
fn flush(py: Python<'_>, timeout: f64) -> bool {
    let timeout = Duration::from_secs_f64(timeout.max(0.0));
    py.detach(|| opentally::flush(timeout))
}

#[pyfunction]
fn disable() {
    opentally::disable();
}

#[pyfunction]
fn enable() {
    opentally::enable();
}

#[pyfunction]
fn opt_out(py: Python<'_>) -> PyResult<()> {
    py.detach(opentally::opt_out).map_err(|e| to_py_err(&e))
}

#[pyfunction]
fn opt_in(py: Python<'_>) -> PyResult<()> {
    py.detach(opentally::opt_in).map_err(|e| to_py_err(&e))
}

/// Erases what the app sent from this machine and replaces the install id.
#[pyfunction]
fn forget(py: Python<'_>) -> PyResult<String> {
    py.detach(opentally::forget)
        .map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))
}

/// Everything the app's collector stores under this machine's install id, as JSON text.
#[pyfunction]
fn export(py: Python<'_>) -> PyResult<String> {
    py.detach(opentally::export)
        .map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))
}

/// The status as text and as JSON, or None before `init`.
#[pyfunction]
fn status() -> Option<(String, String)> {
    opentally::status().map(|s| (s.to_string(), serde_json_string(&s)))
}

fn serde_json_string(s: &opentally::Status) -> String {
    opentally::user::status_json(s)
}

#[pyfunction]
fn suppress_begin() {
    opentally::suppress_begin();
}

#[pyfunction]
fn suppress_end() {
    opentally::suppress_end();
}

/// The end user's commands, with the same text as the `opentally` binary.
#[pyfunction]
#[pyo3(signature = (command, app=None, json=false))]
#[allow(clippy::needless_pass_by_value)] // PyO3 hands arguments over by value
fn user_command(
    py: Python<'_>,
    command: &str,
    app: Option<String>,
    json: bool,
) -> PyResult<String> {
    py.detach(|| match command {
        "status" => Ok(opentally::user::status(app.as_deref(), json)),
        "opt-out" => opentally::user::choose(app.as_deref(), false),
        "opt-in" => opentally::user::choose(app.as_deref(), true),
        "forget" | "export" => {
            let app = app.as_deref().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "--app is required")
            })?;
            if command == "forget" {
                opentally::user::forget(app)
            } else {
                opentally::user::export(app)
            }
            .map_err(|e| std::io::Error::other(e.to_string()))
        }
        other => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("unknown command {other:?}"),
        )),
    })
    .map_err(|e| to_py_err(&e))
}

#[pymodule]
fn _opentally(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(init, m)?)?;
    m.add_function(wrap_pyfunction!(track, m)?)?;
    m.add_function(wrap_pyfunction!(track_call, m)?)?;
    m.add_function(wrap_pyfunction!(register, m)?)?;
    m.add_function(wrap_pyfunction!(call, m)?)?;
    m.add_function(wrap_pyfunction!(drain, m)?)?;
    m.add_function(wrap_pyfunction!(mode, m)?)?;
    m.add_function(wrap_pyfunction!(recording, m)?)?;
    m.add_function(wrap_pyfunction!(flush, m)?)?;
    m.add_function(wrap_pyfunction!(disable, m)?)?;
    m.add_function(wrap_pyfunction!(enable, m)?)?;
    m.add_function(wrap_pyfunction!(opt_out, m)?)?;
    m.add_function(wrap_pyfunction!(opt_in, m)?)?;
    m.add_function(wrap_pyfunction!(status, m)?)?;
    m.add_function(wrap_pyfunction!(forget, m)?)?;
    m.add_function(wrap_pyfunction!(export, m)?)?;
    m.add_function(wrap_pyfunction!(suppress_begin, m)?)?;
    m.add_function(wrap_pyfunction!(suppress_end, m)?)?;
    m.add_function(wrap_pyfunction!(user_command, m)?)?;
    Ok(())
}
