//! Step 2 of the write path: the write-ahead log.
//!
//! A directory of numbered segment files (`00000000000000000001.wal`, ...). Each record is
//! `len: u32 LE | crc32: u32 LE (CRC-32/ISO-HDLC of the payload) | payload`, where the payload
//! is a snappy-compressed protobuf `WriteRequest` (the remote-write message, see
//! [`crate::receive::remote_write`]) holding validated series. A remote-write body that passed
//! validation whole is logged exactly as received.
//!
//! **Group commit**: one writer thread takes every record queued while the previous
//! `fdatasync` ran, writes them all, syncs once, and only then answers each caller. A request
//! is acknowledged only after its record is synced.
//!
//! **Recovery**: on start the segments are read in order; a record that is cut short or fails
//! its CRC ends the replay of that segment (a torn write of a record that was never
//! acknowledged). Segments already persisted to Delta (see [`crate::persist`]) are deleted.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::error::{IngestError, Result};

enum Cmd {
    Append(Vec<u8>, oneshot::Sender<Result<()>>),
    Rotate(oneshot::Sender<Result<u64>>),
    Truncate(u64, oneshot::Sender<Result<()>>),
}

/// Counters the WAL keeps for `/metrics`.
#[derive(Debug, Default)]
pub struct WalStats {
    /// Bytes written since start (record headers included).
    pub bytes_written: AtomicU64,
    /// Number of `fdatasync` calls (one per group commit).
    pub syncs: AtomicU64,
    /// Records written.
    pub records: AtomicU64,
    /// Bytes currently on disk across live segments.
    pub bytes_on_disk: AtomicU64,
}

/// Handle to the WAL writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Wal {
    tx: mpsc::Sender<Cmd>,
    stats: Arc<WalStats>,
    dir: PathBuf,
}

/// A record read back during replay.
#[derive(Debug)]
pub struct ReplayedRecord {
    /// The segment it was in.
    pub segment: u64,
    /// The snappy-compressed protobuf payload.
    pub payload: Vec<u8>,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wal"))
}

/// Lists segment ids in `dir`, ascending.
fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut ids = vec![];
    for e in fs::read_dir(dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".wal")
            && let Ok(id) = stem.parse::<u64>()
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

impl Wal {
    /// Opens the WAL in `dir` (created if missing), deletes segments `<= persisted_upto`
    /// (already in Delta), reads the remaining records for replay, and starts the writer on
    /// a fresh segment.
    ///
    /// # Errors
    /// I/O errors creating the directory, reading segments or creating the new segment.
    pub fn open(dir: &Path, persisted_upto: u64) -> Result<(Wal, Vec<ReplayedRecord>)> {
        fs::create_dir_all(dir)?;
        let mut replay = vec![];
        let mut max_id = persisted_upto;
        let mut on_disk = 0;
        for id in list_segments(dir)? {
            max_id = max_id.max(id);
            let path = segment_path(dir, id);
            if id <= persisted_upto {
                fs::remove_file(&path)?;
                continue;
            }
            let mut buf = vec![];
            File::open(&path)?.read_to_end(&mut buf)?;
            on_disk += buf.len() as u64;
            let mut pos = 0;
            while pos + 8 <= buf.len() {
                let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
                let crc = u32::from_le_bytes(buf[pos + 4..pos + 8].try_into().unwrap());
                let Some(payload) = buf.get(pos + 8..pos + 8 + len) else {
                    tracing::warn!(
                        segment = id,
                        offset = pos,
                        "WAL record cut short; ignoring the rest of the segment"
                    );
                    break;
                };
                if crc32fast::hash(payload) != crc {
                    tracing::warn!(
                        segment = id,
                        offset = pos,
                        "WAL record fails its CRC; ignoring the rest of the segment"
                    );
                    break;
                }
                replay.push(ReplayedRecord {
                    segment: id,
                    payload: payload.to_vec(),
                });
                pos += 8 + len;
            }
        }
        let stats = Arc::new(WalStats::default());
        stats.bytes_on_disk.store(on_disk, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let first = max_id + 1;
        let file = open_segment(dir, first)?;
        let dir2 = dir.to_path_buf();
        let stats2 = stats.clone();
        std::thread::Builder::new()
            .name("strata-wal".into())
            .spawn(move || writer_loop(dir2, first, file, rx, stats2))?;
        Ok((
            Wal {
                tx,
                stats,
                dir: dir.to_path_buf(),
            },
            replay,
        ))
    }

    /// Appends one record and waits until it is synced to disk.
    ///
    /// # Errors
    /// [`IngestError::Wal`] when the write or the sync failed (the record is not durable
    /// and the caller must not acknowledge it), or [`IngestError::ShuttingDown`].
    pub async fn append(&self, payload: Vec<u8>) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Append(payload, tx))
            .map_err(|_| IngestError::ShuttingDown)?;
        rx.await.map_err(|_| IngestError::ShuttingDown)?
    }

    /// Closes the current segment and starts a new one; returns the id of the closed
    /// segment. Every record appended before this call is in a segment `<=` that id.
    ///
    /// # Errors
    /// I/O errors creating the new segment.
    pub async fn rotate(&self) -> Result<u64> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Rotate(tx))
            .map_err(|_| IngestError::ShuttingDown)?;
        rx.await.map_err(|_| IngestError::ShuttingDown)?
    }

    /// Deletes the closed segments with ids `<= upto` (their data is durable in Delta).
    ///
    /// # Errors
    /// I/O errors deleting files.
    pub async fn truncate(&self, upto: u64) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Truncate(upto, tx))
            .map_err(|_| IngestError::ShuttingDown)?;
        rx.await.map_err(|_| IngestError::ShuttingDown)?
    }

    /// The WAL's counters.
    pub fn stats(&self) -> &WalStats {
        &self.stats
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn open_segment(dir: &Path, id: u64) -> Result<BufWriter<File>> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(dir, id))?;
    sync_dir(dir)?;
    Ok(BufWriter::with_capacity(1 << 20, f))
}

fn writer_loop(
    dir: PathBuf,
    mut current: u64,
    mut file: BufWriter<File>,
    rx: mpsc::Receiver<Cmd>,
    stats: Arc<WalStats>,
) {
    let mut pending: Vec<oneshot::Sender<Result<()>>> = vec![];
    let mut deferred: Option<Cmd> = None;
    loop {
        let first = match deferred.take() {
            Some(c) => c,
            None => match rx.recv() {
                Ok(c) => c,
                Err(_) => return,
            },
        };
        match first {
            Cmd::Append(payload, reply) => {
                // Group commit: take every append already queued, then write and sync once.
                let mut batch = vec![(payload, reply)];
                let mut bytes = batch[0].0.len();
                while bytes < (64 << 20) {
                    match rx.try_recv() {
                        Ok(Cmd::Append(p, r)) => {
                            bytes += p.len();
                            batch.push((p, r));
                        }
                        Ok(other) => {
                            deferred = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let mut res: std::io::Result<()> = Ok(());
                let mut written = 0u64;
                for (p, r) in batch {
                    if res.is_ok() {
                        let crc = crc32fast::hash(&p);
                        res = file
                            .write_all(&(p.len() as u32).to_le_bytes())
                            .and_then(|_| file.write_all(&crc.to_le_bytes()))
                            .and_then(|_| file.write_all(&p));
                        written += 8 + p.len() as u64;
                    }
                    pending.push(r);
                }
                if res.is_ok() {
                    res = file.flush().and_then(|_| file.get_ref().sync_data());
                }
                stats.syncs.fetch_add(1, Ordering::Relaxed);
                match res {
                    Ok(()) => {
                        stats.bytes_written.fetch_add(written, Ordering::Relaxed);
                        stats.bytes_on_disk.fetch_add(written, Ordering::Relaxed);
                        stats
                            .records
                            .fetch_add(pending.len() as u64, Ordering::Relaxed);
                        for r in pending.drain(..) {
                            let _ = r.send(Ok(()));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "WAL write failed");
                        for r in pending.drain(..) {
                            let _ = r.send(Err(IngestError::Wal(e.to_string())));
                        }
                        // Start a fresh segment so that a partial record is never followed
                        // by acknowledged ones in the same file.
                        current += 1;
                        match open_segment(&dir, current) {
                            Ok(f) => file = f,
                            Err(e) => tracing::error!(error = %e, "cannot open a new WAL segment"),
                        }
                    }
                }
            }
            Cmd::Rotate(reply) => {
                let sealed = current;
                let r = file
                    .flush()
                    .and_then(|_| file.get_ref().sync_data())
                    .map_err(IngestError::from)
                    .and_then(|_| open_segment(&dir, sealed + 1));
                match r {
                    Ok(f) => {
                        file = f;
                        current = sealed + 1;
                        let _ = reply.send(Ok(sealed));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Cmd::Truncate(upto, reply) => {
                let r = (|| -> Result<()> {
                    for id in list_segments(&dir)? {
                        if id <= upto && id < current {
                            let p = segment_path(&dir, id);
                            let len = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                            fs::remove_file(&p)?;
                            stats.bytes_on_disk.fetch_sub(
                                len.min(stats.bytes_on_disk.load(Ordering::Relaxed)),
                                Ordering::Relaxed,
                            );
                        }
                    }
                    sync_dir(&dir)
                })();
                let _ = reply.send(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn append_rotate_replay_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, replay) = Wal::open(dir.path(), 0).unwrap();
        assert!(replay.is_empty());
        wal.append(b"one".to_vec()).await.unwrap();
        let sealed = wal.rotate().await.unwrap();
        assert_eq!(sealed, 1);
        wal.append(b"two".to_vec()).await.unwrap();
        drop(wal);
        // Reopen: both records replay, in order.
        let (_wal, replay) = Wal::open(dir.path(), 0).unwrap();
        let got: Vec<_> = replay
            .iter()
            .map(|r| (r.segment, r.payload.clone()))
            .collect();
        assert_eq!(got, vec![(1, b"one".to_vec()), (2, b"two".to_vec())]);
        // Segment 1 persisted: it is deleted and not replayed.
        let (_wal, replay) = Wal::open(dir.path(), 1).unwrap();
        assert_eq!(replay.len(), 1);
        assert_eq!(replay[0].payload, b"two");
    }

    #[tokio::test]
    async fn torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), 0).unwrap();
        wal.append(b"good".to_vec()).await.unwrap();
        drop(wal);
        // Simulate a crash in the middle of writing a second record.
        let mut f = OpenOptions::new()
            .append(true)
            .open(segment_path(dir.path(), 1))
            .unwrap();
        f.write_all(&100u32.to_le_bytes()).unwrap();
        f.write_all(&[1, 2, 3]).unwrap();
        drop(f);
        let (_wal, replay) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(replay.len(), 1);
        assert_eq!(replay[0].payload, b"good");
    }
}
