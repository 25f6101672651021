//! Serving StatsD and DogStatsD (`strata_ingest::receive::statsd` parses and aggregates):
//! datagrams on UDP and newline-separated lines on TCP, both on `[statsd] addr` (default
//! 127.0.0.1:8125), aggregated per `flush_interval` and written at each flush. StatsD has
//! no answers: a malformed line is counted in `/metrics`
//! (`strata_samples_rejected_total{reason="statsd_<reason>"}`) and the listener goes on.
//! What an interval received is held in memory until its flush: a crash loses at most
//! one interval, as with any StatsD server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use strata_ingest::Ingester;
use strata_ingest::receive::otlp::Translated;
use strata_ingest::receive::remote_write::Validated;
use strata_ingest::receive::statsd::{Aggregator, Mapper, parse_packet};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::deltas::DeltaWriter;
use crate::server::now_ms;

/// StatsD's port.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8125";

/// Longest TCP line, bytes: a longer one closes its connection (as a datagram cannot be
/// longer).
const MAX_LINE: usize = 65_536;

/// The StatsD receiver: the current interval's aggregation and the writer of flushes.
pub(crate) struct Statsd {
    agg: Mutex<Aggregator>,
    writer: DeltaWriter,
    ingester: Arc<Ingester>,
}

impl Statsd {
    /// A receiver writing to `ingester`, series named by `mapper`, counter totals
    /// resumed through the PromQL session `ctx`.
    pub(crate) fn new(
        ingester: Arc<Ingester>,
        ctx: datafusion::prelude::SessionContext,
        mapper: Mapper,
    ) -> Self {
        Statsd {
            agg: Mutex::new(Aggregator::with_mapper(now_ms(), mapper)),
            writer: DeltaWriter::new(ingester.clone(), ctx),
            ingester,
        }
    }

    /// Adds a packet's lines to the interval; counts the malformed ones by reason.
    fn receive(&self, packet: &[u8]) {
        let (ok, bad) = parse_packet(packet);
        let rejected = &self.ingester.metrics().samples_rejected;
        for why in bad {
            rejected
                .with_label_values(&[&format!("statsd_{}", why.reason())])
                .inc();
        }
        let bad_tags: u64 = ok.iter().map(|m| u64::from(m.bad_tags)).sum();
        if bad_tags > 0 {
            rejected
                .with_label_values(&["statsd_malformed_tag"])
                .inc_by(bad_tags);
        }
        let mut dropped = 0;
        if let Ok(mut agg) = self.agg.lock() {
            for m in &ok {
                if !agg.add(m) {
                    dropped += 1;
                }
            }
        }
        if dropped > 0 {
            rejected
                .with_label_values(&["statsd_dropped_by_mapping"])
                .inc_by(dropped);
        }
    }

    /// Ends the interval and writes what it received; a failed write is logged (its
    /// points are lost, and counted as `statsd_flush_failed`).
    async fn flush(&self) {
        let now = now_ms();
        let Ok(flush) = self.agg.lock().map(|mut a| a.flush(now)) else {
            return;
        };
        let limits = self.ingester.limits();
        let points = (flush.samples.len() + flush.deltas.len()) as u64;
        let mut validated = Validated::default();
        for (labels, sample) in flush.samples {
            validated.push(&labels, vec![sample], limits, now);
        }
        let mut t = Translated {
            validated,
            deltas: flush.deltas,
            ..Default::default()
        };
        let rejected = &self.ingester.metrics().samples_rejected;
        match self.writer.write(&mut t, "statsd", now).await {
            Ok(_) if t.rejected_points > 0 => {
                rejected
                    .with_label_values(&["statsd_overlap"])
                    .inc_by(t.rejected_points);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, points, "writing a StatsD flush failed");
                rejected
                    .with_label_values(&["statsd_flush_failed"])
                    .inc_by(points);
            }
        }
    }
}

/// The mapping in `file` (none: names escaped).
///
/// # Errors
/// A message naming the file and the problem: unreadable, or not a mapping
/// configuration.
pub(crate) fn mapper(file: Option<&std::path::Path>) -> Result<Mapper, String> {
    let Some(f) = file else {
        return Ok(Mapper::default());
    };
    let text = std::fs::read_to_string(f)
        .map_err(|e| format!("reading the StatsD mapping file {}: {e}", f.display()))?;
    Mapper::parse(&text).map_err(|e| format!("{}: {e}", f.display()))
}

/// Binds UDP and TCP on `addr` (`host:port`; port 0 picks one free for both). Empty: none. When the default address is taken, logs a warning and returns
/// none; any other address must bind.
///
/// # Errors
/// A message when another address does not parse or bind.
pub(crate) async fn bind(
    addr: &str,
) -> Result<Option<(tokio::net::UdpSocket, tokio::net::TcpListener)>, String> {
    if addr.is_empty() {
        return Ok(None);
    }
    let bound = async {
        // Port 0: UDP picks a port, which TCP may already use elsewhere; pick again then.
        let mut attempts = 0;
        loop {
            let udp = tokio::net::UdpSocket::bind(addr).await?;
            match tokio::net::TcpListener::bind(udp.local_addr()?).await {
                Ok(tcp) => return Ok::<_, std::io::Error>((udp, tcp)),
                Err(e)
                    if attempts < 16 && udp.local_addr()?.port() != 0 && addr.ends_with(":0") =>
                {
                    tracing::debug!(error = %e, "StatsD: the UDP port is taken on TCP; another");
                    attempts += 1;
                }
                Err(e) => return Err(e),
            }
        }
    };
    match bound.await {
        Ok(b) => Ok(Some(b)),
        Err(e) if addr == DEFAULT_ADDR => {
            tracing::warn!(error = %e, %addr, "the StatsD port is taken; serving without StatsD (set [statsd] addr)");
            Ok(None)
        }
        Err(e) => Err(format!("binding the StatsD address {addr}: {e}")),
    }
}

/// Runs the UDP and TCP listeners and the flushes every `every` until `stop`, then
/// flushes once more. Returns the tasks.
pub(crate) fn spawn(
    statsd: Arc<Statsd>,
    (udp, tcp): (tokio::net::UdpSocket, tokio::net::TcpListener),
    every: std::time::Duration,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![];
    let (s, mut rx) = (statsd.clone(), stop.clone());
    tasks.push(tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            tokio::select! {
                _ = rx.wait_for(|v| *v) => return,
                got = udp.recv_from(&mut buf) => match got {
                    Ok((n, _)) => s.receive(&buf[..n]),
                    Err(e) => tracing::debug!(error = %e, "StatsD UDP receive"),
                },
            }
        }
    }));
    let (s, mut rx, conn_stop) = (statsd.clone(), stop.clone(), stop.clone());
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = rx.wait_for(|v| *v) => return,
                conn = tcp.accept() => match conn {
                    Ok((c, peer)) => {
                        tokio::spawn(read_lines(s.clone(), c, peer, conn_stop.clone()));
                    }
                    Err(e) => tracing::debug!(error = %e, "StatsD TCP accept"),
                },
            }
        }
    }));
    let (s, mut rx) = (statsd, stop);
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(std::time::Duration::from_millis(10)));
        tick.tick().await;
        loop {
            let stopping = tokio::select! {
                _ = rx.wait_for(|v| *v) => true,
                _ = tick.tick() => false,
            };
            s.flush().await;
            if stopping {
                return;
            }
        }
    }));
    tasks
}

/// Reads one TCP connection's lines until it closes, a line is longer than
/// [`MAX_LINE`], or `stop`.
async fn read_lines(
    statsd: Arc<Statsd>,
    mut conn: tokio::net::TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = tokio::select! {
            _ = stop.wait_for(|v| *v) => return,
            n = conn.read(&mut buf) => n,
        };
        match n {
            Ok(0) | Err(_) => {
                // The last line needs no newline.
                if !pending.is_empty() {
                    statsd.receive(&pending);
                }
                return;
            }
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                if let Some(end) = pending.iter().rposition(|b| *b == b'\n') {
                    statsd.receive(&pending[..end]);
                    pending.drain(..=end);
                }
                if pending.len() > MAX_LINE {
                    tracing::debug!(%peer, "a StatsD TCP line longer than 64 KiB: closing");
                    statsd
                        .ingester
                        .metrics()
                        .samples_rejected
                        .with_label_values(&["statsd_line_too_long"])
                        .inc();
                    return;
                }
            }
        }
    }
}
