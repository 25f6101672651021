//! The `strata` command: `serve`, `sql`, `bench-load`, `promqltest`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: the write path allocates per series and per request
/// from several threads, and glibc's arena locks showed up as ~7% of ingest CPU in a
/// `perf` profile of the load bench (malloc and free as another ~20%). Built without
/// transparent huge pages (feature `no_thp`): with them, every 2 MiB region mimalloc
/// touched became resident, about 1 KB per active series at 10,000 series in the load
/// bench and 30 MB at start.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use strata::config::Config;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Strata: a metrics telemetry lakehouse"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: remote write, scrape, JSON push, Flight SQL, persistence.
    Serve {
        /// TOML configuration file (flags override it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory: a local path (default ./data), s3://bucket/prefix, or memory://.
        #[arg(long)]
        data_dir: Option<String>,
        /// WAL directory on local disk (default <data-dir>/wal).
        #[arg(long)]
        wal_dir: Option<PathBuf>,
        /// HTTP address (default 127.0.0.1:9201).
        #[arg(long)]
        http_addr: Option<SocketAddr>,
        /// Arrow Flight SQL address (default 127.0.0.1:50051).
        #[arg(long)]
        flight_addr: Option<SocketAddr>,
        /// OTLP gRPC address (default 127.0.0.1:4317; "" for none).
        #[arg(long)]
        otlp_grpc_addr: Option<String>,
        /// StatsD UDP and TCP address (default 127.0.0.1:8125; "" for none).
        #[arg(long)]
        statsd_addr: Option<String>,
    },
    /// Run one SQL statement and print the result as a table.
    Sql {
        /// The statement.
        query: String,
        /// Read this data directory's Delta tables directly instead of asking a server.
        #[arg(long)]
        data_dir: Option<String>,
        /// Flight SQL endpoint of a running server.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        flight: String,
        /// On a server with tenants: the tenant to query (sent as `x-scope-orgid`).
        #[arg(long)]
        tenant: Option<String>,
        /// On a server with tenants: the tenant's token (sent as a bearer token).
        #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Load bench: send TSBS-like cpu data by remote write to each URL in turn and report
    /// samples/s (see benches/README.md; benches/load.sh runs it against Strata and
    /// VictoriaMetrics).
    BenchLoad {
        /// Write URLs, each as NAME=URL (e.g. strata=http://127.0.0.1:9201/api/v1/write,
        /// or .../write for `--protocol influx`).
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        /// The protocol: remote write 1.0, InfluxDB line protocol or OTLP (protobuf, to
        /// .../v1/metrics; these two the `cpu` data only).
        #[arg(long, value_enum, default_value = "remote-write")]
        protocol: strata::bench::Protocol,
        /// Hosts (series: 10 cpu fields per host, and a 14-series histogram on the first 50).
        #[arg(long, default_value_t = 1000)]
        hosts: usize,
        /// Intervals of data per series (ending a minute ago).
        #[arg(long, default_value_t = 360)]
        intervals: usize,
        /// Seconds between a series' samples.
        #[arg(long, default_value_t = 10)]
        interval_seconds: i64,
        /// The data ends this many seconds ago.
        #[arg(long, default_value_t = 60)]
        end_ago_seconds: i64,
        /// Hosts (the first ones) carrying the 14-series histogram.
        #[arg(long, default_value_t = strata::bench::HISTOGRAM_HOSTS)]
        histogram_hosts: usize,
        /// Series per request.
        #[arg(long, default_value_t = 2000)]
        series_per_request: usize,
        /// Intervals (samples per series) per request.
        #[arg(long, default_value_t = 1)]
        intervals_per_request: usize,
        /// Requests in flight.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// PromQL bench: range queries over TSBS cpu data (loaded with bench-load) against each
    /// Prometheus-API base URL, the targets taking turns request by request; prints each
    /// query's median latency and the ratio
    /// to the first target (see benches/README.md; benches/promql.sh runs it against
    /// Strata, VictoriaMetrics and Prometheus).
    BenchPromql {
        /// Prometheus API base URLs, each as NAME=URL (e.g. strata=http://127.0.0.1:9201).
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        /// End of the queried range, Unix seconds (default: now).
        #[arg(long)]
        end: Option<i64>,
        /// Runs per query per target (the median is reported).
        #[arg(long, default_value_t = 10)]
        repeat: usize,
        /// Unmeasured runs per query per target before the measured ones (caches and
        /// indexes each system builds on first read are then in place, as for a
        /// dashboard that refreshes).
        #[arg(long, default_value_t = 0)]
        warmup: usize,
        /// The queries: `dashboards` (the TSBS and per-class cases over a day of 10 s
        /// data) or `long-range` (2-year and 90-day ranges over 5-minute data, the rollup
        /// tiers' bench; see benches/long_range.sh).
        #[arg(long, default_value = "dashboards")]
        cases: String,
    },
    /// Anomaly detection bench: precision and recall of an anomaly rule on synthetic
    /// series with known anomalies at each sensitivity, and the cost of fitting baselines
    /// (see benches/README.md and `strata_rules::anomaly_eval`).
    BenchAnomaly {
        /// Series in the precision and recall runs.
        #[arg(long, default_value_t = 500)]
        series: usize,
        /// Sensitivities to run, sigmas.
        #[arg(long, value_delimiter = ',', default_value = "2,2.5,3,3.5,4,5")]
        sensitivities: Vec<f64>,
        /// Minimum durations (`for`) to run, seconds.
        #[arg(long, value_delimiter = ',', default_value = "0,120")]
        min_durations: Vec<u64>,
        /// Baselines' resolution, seconds.
        #[arg(long, default_value_t = 900)]
        resolution: u64,
        /// Series whose fit is timed.
        #[arg(long, default_value_t = 10_000)]
        fit_series: usize,
    },
    /// Rollup tiers: rebuild their history on a running server.
    Rollup {
        #[command(subcommand)]
        command: RollupCommand,
    },
    /// Recording and alerting rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Run Prometheus PromQL test scripts (the promqltest format) through the write path
    /// and the PromQL engine; prints per file the cases passed, failed and skipped, and
    /// exits with 1 if any case failed.
    Promqltest {
        /// Persist the head into the Delta tables after every load, so that queries read
        /// the tables rather than the head.
        #[arg(long)]
        persist: bool,
        /// The test scripts.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Run rule unit tests in `promtool test rules` format (docs/alerting.md); prints
    /// SUCCESS or the failures per file, and exits with 1 if any failed.
    Test {
        /// The test files.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum RollupCommand {
    /// Rebuild a tier's buckets over a time range from the tier below (raw samples for the
    /// first tier), replacing what the tier held there, up to 64 days per request; shows a
    /// progress bar. Build the tiers in order (`1m`, then `1h`, then `1d`).
    Backfill {
        /// The tier's name (`1m`, `1h`, `1d` by default).
        #[arg(long)]
        tier: String,
        /// Start of the range: RFC 3339 or Unix seconds.
        #[arg(long)]
        from: String,
        /// End of the range: RFC 3339 or Unix seconds (default: now).
        #[arg(long)]
        to: Option<String>,
        /// The server's HTTP address.
        #[arg(long, default_value = "http://127.0.0.1:9201")]
        url: String,
        /// On a server with tenants: the tenant to rebuild (sent as `X-Scope-OrgID`).
        #[arg(long)]
        tenant: Option<String>,
        /// On a server with tenants: the tenant's token (sent as `Authorization: Bearer`).
        #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Promqltest { .. } => "warn,deltalake=error",
        _ => "info,deltalake=warn,datafusion=warn,buoyant_kernel=warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            wal_dir,
            http_addr,
            flight_addr,
            otlp_grpc_addr,
            statsd_addr,
        } => {
            let mut cfg = match config {
                Some(p) => Config::from_file(&p)?,
                None => Config::default(),
            };
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            if let Some(w) = wal_dir {
                cfg.wal_dir = Some(w);
            }
            if let Some(a) = http_addr {
                cfg.http_addr = a;
            }
            if let Some(a) = flight_addr {
                cfg.flight_addr = a;
            }
            if let Some(a) = otlp_grpc_addr {
                cfg.otlp.grpc_addr = a;
            }
            if let Some(a) = statsd_addr {
                cfg.statsd.addr = a;
            }
            let running = strata::server::start(cfg).await?;
            eprintln!(
                "strata: HTTP on {}, Flight SQL on {}, OTLP gRPC on {}, StatsD on {}",
                running.http_addr,
                running.flight_addr,
                running
                    .otlp_grpc_addr
                    .map_or_else(|| "none".to_string(), |a| a.to_string()),
                running
                    .statsd_addr
                    .map_or_else(|| "none".to_string(), |a| a.to_string())
            );
            shutdown_signal().await;
            eprintln!("strata: shutting down (persisting the head)");
            running.shutdown().await;
            Ok(())
        }
        Command::Sql {
            query,
            data_dir,
            flight,
            tenant,
            token,
        } => {
            let batches = match data_dir {
                Some(d) => strata::sql_client::on_data_dir(&d, &query).await?,
                None => {
                    let as_tenant = strata::tenants::TenantHeaders {
                        org_id: tenant,
                        token,
                    };
                    strata::sql_client::over_flight_as(&flight, &query, &as_tenant).await?
                }
            };
            let table =
                arrow::util::pretty::pretty_format_batches(&batches).map_err(|e| e.to_string())?;
            println!("{table}");
            Ok(())
        }
        Command::BenchLoad {
            targets,
            protocol,
            end_ago_seconds,
            hosts,
            intervals,
            series_per_request,
            intervals_per_request,
            concurrency,
            interval_seconds,
            histogram_hosts,
        } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| e.to_string())?
                .as_millis() as i64;
            let spec = strata::bench::LoadSpec {
                hosts,
                intervals,
                series_per_request,
                intervals_per_request,
                // End the data `end_ago_seconds` ago, aligned to the interval.
                start_ms: {
                    let i = interval_seconds.max(1) * 1000;
                    (now - end_ago_seconds * 1000 - intervals as i64 * i) / i * i
                },
                interval_ms: interval_seconds.max(1) * 1000,
                histogram_hosts,
            };
            let (bodies, samples) = protocol.payloads(&spec);
            let bytes: usize = bodies.iter().map(|b| b.len()).sum();
            println!(
                "load ({protocol:?}): {hosts} hosts = {} series, {intervals} intervals, {samples} samples in {} requests ({:.1} MB {})",
                protocol.series(&spec),
                bodies.len(),
                bytes as f64 / 1e6,
                protocol.encoding(),
            );
            let mut first: Option<f64> = None;
            for t in targets {
                let (name, url) = t
                    .split_once('=')
                    .ok_or_else(|| format!("--target {t}: expected NAME=URL"))?;
                let secs = strata::bench::send_all(url, protocol, &bodies, concurrency).await?;
                let rate = samples as f64 / secs;
                let ratio = first.map(|f| rate / f).unwrap_or(1.0);
                first.get_or_insert(rate);
                println!(
                    "{name}: {samples} samples in {secs:.2} s = {rate:.0} samples/s (x{ratio:.2} of the first target)"
                );
            }
            Ok(())
        }
        Command::BenchAnomaly {
            series,
            sensitivities,
            min_durations,
            resolution,
            fit_series,
        } => {
            use strata_rules::anomaly_eval::{Setup, fit_cost, run};
            let base = Setup {
                series,
                seed: 42,
                history: std::time::Duration::from_secs(28 * 86_400),
                resolution: std::time::Duration::from_secs(resolution),
                sensitivity: 3.0,
                min_duration: std::time::Duration::ZERO,
                dedup: std::time::Duration::from_secs(300),
            };
            println!(
                "| sensitivity | for | events | precision | recall | spike | dip | level shift | variance change |"
            );
            println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            for m in &min_durations {
                for s in &sensitivities {
                    let r = run(&Setup {
                        sensitivity: *s,
                        min_duration: std::time::Duration::from_secs(*m),
                        ..base.clone()
                    })
                    .await?;
                    let kinds: Vec<String> =
                        r.found.iter().map(|(_, f, n)| format!("{f}/{n}")).collect();
                    println!(
                        "| {s} | {m}s | {} | {:.3} | {:.3} | {} |",
                        r.events,
                        r.precision(),
                        r.recall(),
                        kinds.join(" | ")
                    );
                }
            }
            let rss = || {
                std::fs::read_to_string("/proc/self/status")
                    .unwrap_or_default()
                    .lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let before = rss();
            let (secs, bytes) = fit_cost(&base, fit_series)?;
            println!(
                "fit: {fit_series} series of {} days at {resolution} s: {:.2} ms per series, {bytes} bytes per baseline; peak RSS {} MiB (+{} MiB)",
                base.history.as_secs() / 86_400,
                secs * 1000.0,
                rss() / 1024,
                rss().saturating_sub(before) / 1024
            );
            Ok(())
        }
        Command::Rules {
            command: RulesCommand::Test { files },
        } => {
            if strata::rules_test::run(&files).await {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        Command::Rollup {
            command:
                RollupCommand::Backfill {
                    tier,
                    from,
                    to,
                    url,
                    tenant,
                    token,
                },
        } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| e.to_string())?
                .as_millis() as i64;
            let from = strata::prom_api::parse_time("from", &from)?;
            let to = match to {
                Some(t) => strata::prom_api::parse_time("to", &t)?,
                None => now,
            };
            let r = strata::rollup_api::backfill(
                &url,
                &tier,
                from,
                to,
                &strata::tenants::TenantHeaders {
                    org_id: tenant,
                    token,
                },
            )
            .await?;
            println!(
                "tier {tier}: {} series-buckets written from {} source rows in {} commits; {} files compacted",
                r.rows_written, r.source_rows, r.commits, r.files_compacted
            );
            Ok(())
        }
        Command::BenchPromql {
            targets,
            end,
            repeat,
            warmup,
            cases,
        } => {
            let end = match end {
                Some(e) => e,
                None => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(|e| e.to_string())?
                    .as_secs() as i64,
            };
            let mut parsed = vec![];
            for t in &targets {
                parsed.push(
                    t.split_once('=')
                        .ok_or_else(|| format!("--target {t}: expected NAME=URL"))?,
                );
            }
            print!("{:<22}", "query");
            for (name, _) in &parsed {
                print!(" {name:>18}");
            }
            println!();
            let cases = match cases.as_str() {
                "dashboards" => strata::bench::promql_cases(),
                "long-range" => strata::bench::long_range_cases(),
                other => {
                    return Err(format!(
                        "--cases {other}: expected dashboards or long-range"
                    ));
                }
            };
            for q in cases {
                let mut first: Option<f64> = None;
                let mut cells = vec![];
                let urls: Vec<&str> = parsed.iter().map(|(_, url)| *url).collect();
                for timed in strata::bench::time_queries(&urls, &q, end, repeat, warmup).await {
                    match timed {
                        Ok((ms, series)) => {
                            let ratio = first.map(|f| ms / f).unwrap_or(1.0);
                            first.get_or_insert(ms);
                            cells.push(format!("{ms:.1} ms x{ratio:.2} ({series})"));
                        }
                        Err(e) => {
                            eprintln!("{e}");
                            cells.push("failed".into());
                        }
                    }
                }
                println!(
                    "{:<22} {}",
                    q.name,
                    cells
                        .iter()
                        .map(|c| format!("{c:>18}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            Ok(())
        }
        Command::Promqltest { persist, files } => {
            let opts = strata::promqltest::Options { persist };
            let t = strata::promqltest::run_files(&files, &opts).await;
            if t.failed > 0 || t.errors > 0 {
                return Err(format!(
                    "{} cases failed, {} file errors",
                    t.failed, t.errors
                ));
            }
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
