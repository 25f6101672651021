//! The `strata` command: `serve`, `sql`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
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
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "info,deltalake=warn,datafusion=warn,buoyant_kernel=error".into()
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()).await {
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
            let running = strata::server::start(cfg).await?;
            eprintln!(
                "strata: HTTP on {}, Flight SQL on {}",
                running.http_addr, running.flight_addr
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
        } => {
            let batches = match data_dir {
                Some(d) => strata::sql_client::on_data_dir(&d, &query).await?,
                None => strata::sql_client::over_flight(&flight, &query).await?,
            };
            let table =
                arrow::util::pretty::pretty_format_batches(&batches).map_err(|e| e.to_string())?;
            println!("{table}");
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
