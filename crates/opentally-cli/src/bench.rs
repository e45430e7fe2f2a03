//! `opentally bench ingest`: load on the collector, with a progress bar.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use opentally_loadgen::{self as loadgen, LoadConfig};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Send track events in batches and report events/s and ack latency.
    Ingest {
        /// The batch endpoint.
        #[arg(long, default_value = "http://127.0.0.1:8080/v1/batch")]
        url: String,
        /// The project's write key.
        #[arg(long, env = "OPENTALLY_BENCH_WRITE_KEY")]
        write_key: String,
        /// Events to send in all.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Events per request.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Distinct install ids to spread the events over.
        #[arg(long, default_value_t = 10_000)]
        installs: u64,
        /// Send each event of a batch from a different install: the worst case for the
        /// collector's work per install. By default each batch comes from one install, as an
        /// SDK's batch does.
        #[arg(long)]
        install_per_event: bool,
        /// The event name (must be in the project's catalog, if it has one).
        #[arg(long, default_value = "bench_event")]
        event: String,
        /// Compress request bodies with gzip.
        #[arg(long)]
        gzip: bool,
        /// Append the messageId of every acknowledged event to this file.
        #[arg(long)]
        acked_log: Option<PathBuf>,
        /// Offer this many events per second in all (open loop) instead of as fast as possible.
        #[arg(long)]
        rate: Option<f64>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[allow(clippy::cast_precision_loss)]
fn ms(d: Option<std::time::Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

pub fn bench(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    let BenchCommand::Ingest {
        url,
        write_key,
        events,
        batch,
        concurrency,
        installs,
        install_per_event,
        event,
        gzip,
        acked_log,
        rate,
        json,
    } = cmd;
    let cfg = LoadConfig {
        url,
        write_key,
        events,
        batch: batch.max(1),
        concurrency,
        gzip,
        installs,
        spread: if install_per_event {
            loadgen::Spread::InstallPerEvent
        } else {
            loadgen::Spread::InstallPerBatch
        },
        acked_log,
        event_name: event,
        rate,
    };
    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(events)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} eta {eta}")
            .expect("valid template"),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let progress_bar = bar.clone();
    let report = runtime.block_on(loadgen::run(cfg, move |n| progress_bar.set_position(n)))?;
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({
            "requests": report.requests,
            "events_acked": report.events_acked,
            "events_rejected": report.events_rejected,
            "failures": report.failures,
            "seconds": report.elapsed.as_secs_f64(),
            "events_per_sec": report.events_per_sec(),
            "ack_ms": {"p50": ms(report.latency_quantile(0.5)), "p95": ms(report.latency_quantile(0.95)), "p99": ms(report.latency_quantile(0.99))},
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "requests:        {}", report.requests)?;
        writeln!(out, "events acked:    {}", report.events_acked)?;
        writeln!(out, "events rejected: {}", report.events_rejected)?;
        for (status, n) in &report.failures {
            let what = if *status == 0 {
                "no answer".to_owned()
            } else {
                format!("HTTP {status}")
            };
            writeln!(out, "failed requests: {n} ({what})")?;
        }
        writeln!(
            out,
            "elapsed:         {:.2} s",
            report.elapsed.as_secs_f64()
        )?;
        writeln!(
            out,
            "throughput:      {:.0} events/s",
            report.events_per_sec()
        )?;
        writeln!(
            out,
            "ack latency:     p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
            ms(report.latency_quantile(0.5)),
            ms(report.latency_quantile(0.95)),
            ms(report.latency_quantile(0.99))
        )?;
    }
    let failed = report.failures.values().sum::<u64>();
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
