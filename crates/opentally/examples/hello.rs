//! A CLI instrumented with OpenTally in four lines. Telemetry is on until refused (DO_NOT_TRACK=1,
//! OPENTALLY_TELEMETRY=off, HELLO_NO_TELEMETRY=1, `opentally opt-out --app hello`…); see what it
//! sends with OPENTALLY_LOG=1. OPENTALLY_ENDPOINT and OPENTALLY_WRITE_KEY point it at a collector:
//!
//! ```sh
//! OPENTALLY_ENDPOINT=http://127.0.0.1:8080 OPENTALLY_WRITE_KEY=otw_… cargo run -p opentally --example hello
//! ```

fn main() {
    let _telemetry = opentally::init(
        opentally::Config::new("hello", "otw_hello", "http://127.0.0.1:8080")
            .disable_env("HELLO_NO_TELEMETRY"),
    );
    opentally::track("greet", [("style", "plain".into())]);
    let mut out = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut out, b"hello\n");
}
