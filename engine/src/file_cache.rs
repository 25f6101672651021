//! Whole Parquet files of the `samples` table kept in memory, so that a PromQL query reads
//! its pages without a file-system call or an object-store request.
//!
//! A small PromQL query reads a few pages of each of a few files. Through `object_store`'s
//! local file system every read is a `spawn_blocking` task (a thread hand-off each way), and
//! through S3 a request: in a `perf` profile of the bench's one-host, one-hour query
//! (`benches/README.md`) the scan took most of the query's time for 1.3 KB of pages.
//! Files of a Delta table never change once written (a new version writes new files), so a
//! file read once can serve every later query. This is the design of InfluxDB 3's Parquet
//! cache (`influxdb3_cache::parquet_cache`: whole files in memory, evicted least recently
//! used), which Strata follows.
//!
//! [`FileCache::store`] wraps the table's object store: a plain read of a file (a range or
//! the whole file, without conditions or versions) loads the whole file into the cache on
//! first use, if the file is at most a quarter of the cache, and is answered from memory from
//! then on. Every other call goes to the wrapped store unchanged.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::object_store::path::Path;
use datafusion::object_store::{
    CopyOptions, Error, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, Result,
};
use futures::StreamExt;
use futures::stream::BoxStream;

/// The default size of a [`FileCache`] (bytes): 1 GiB, about a year of the PromQL bench's
/// 10,000 series at 10 s (its 24 hours take 11 MB of files).
pub const FILE_CACHE_BYTES: usize = 1 << 30;

/// Whole files in memory, least recently used evicted first, at most `max_bytes` together.
#[derive(Debug)]
pub struct FileCache {
    max_bytes: usize,
    state: parking_lot::Mutex<State>,
}

#[derive(Debug)]
struct State {
    files: lru::LruCache<Path, Arc<Cached>>,
    bytes: usize,
}

/// A cached file: its bytes and its metadata as the store gave them.
#[derive(Debug)]
struct Cached {
    bytes: Bytes,
    meta: ObjectMeta,
}

impl FileCache {
    /// A cache of at most `max_bytes` bytes (0: nothing is cached).
    pub fn new(max_bytes: usize) -> FileCache {
        FileCache {
            max_bytes,
            state: parking_lot::Mutex::new(State {
                files: lru::LruCache::unbounded(),
                bytes: 0,
            }),
        }
    }

    /// `inner` with plain reads answered from this cache (see the module doc).
    pub fn store(self: &Arc<Self>, inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(CachingStore {
            inner,
            cache: self.clone(),
        })
    }

    /// The bytes of the files held now.
    pub fn bytes(&self) -> usize {
        self.state.lock().bytes
    }

    /// Drops the files not in `paths` (files a new table version no longer lists).
    pub fn retain(&self, paths: &HashSet<&Path>) {
        let mut state = self.state.lock();
        let gone: Vec<Path> = state
            .files
            .iter()
            .filter(|(p, _)| !paths.contains(p))
            .map(|(p, _)| p.clone())
            .collect();
        for p in gone {
            if let Some(f) = state.files.pop(&p) {
                state.bytes -= f.bytes.len();
            }
        }
    }

    fn get(&self, path: &Path) -> Option<Arc<Cached>> {
        self.state.lock().files.get(path).cloned()
    }

    /// Whether a file of `size` bytes is cached at all.
    fn admits(&self, size: u64) -> bool {
        size > 0 && size <= (self.max_bytes / 4) as u64
    }

    fn insert(&self, path: Path, file: Arc<Cached>) {
        let mut state = self.state.lock();
        state.bytes += file.bytes.len();
        if let Some(old) = state.files.put(path, file) {
            state.bytes -= old.bytes.len();
        }
        while state.bytes > self.max_bytes {
            match state.files.pop_lru() {
                Some((_, f)) => state.bytes -= f.bytes.len(),
                None => break,
            }
        }
    }
}

/// An object store whose plain reads are answered from a [`FileCache`].
#[derive(Debug)]
struct CachingStore {
    inner: Arc<dyn ObjectStore>,
    cache: Arc<FileCache>,
}

impl fmt::Display for CachingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileCache({})", self.inner)
    }
}

impl CachingStore {
    /// The file at `location` from the cache, loaded whole on a miss; `None` when the file
    /// is not cached (too large for the cache: its body is then not read here).
    async fn file(&self, location: &Path) -> Result<Option<Arc<Cached>>> {
        if let Some(f) = self.cache.get(location) {
            return Ok(Some(f));
        }
        let got = self.inner.get(location).await?;
        if !self.cache.admits(got.meta.size) {
            return Ok(None);
        }
        let meta = got.meta.clone();
        let bytes = got.bytes().await?;
        let file = Arc::new(Cached { bytes, meta });
        self.cache.insert(location.clone(), file.clone());
        Ok(Some(file))
    }
}

/// `range` of `file`, or the error the local file system gives for a range past its end.
fn slice(file: &Cached, location: &Path, range: &Range<u64>) -> Result<Bytes> {
    let len = file.bytes.len() as u64;
    if range.start > range.end || range.end > len {
        return Err(Error::Generic {
            store: "FileCache",
            source: format!("range {range:?} out of bounds of {location} ({len} bytes)").into(),
        });
    }
    Ok(file.bytes.slice(range.start as usize..range.end as usize))
}

#[async_trait]
impl ObjectStore for CachingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let plain = options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
            && options.version.is_none()
            && !options.head;
        let file = match plain {
            true => self.file(location).await?,
            false => None,
        };
        let Some(file) = file else {
            return self.inner.get_opts(location, options).await;
        };
        let len = file.bytes.len() as u64;
        let range = match &options.range {
            Some(r) => r.as_range(len).map_err(|e| Error::Generic {
                store: "FileCache",
                source: Box::new(e),
            })?,
            None => 0..len,
        };
        let data = slice(&file, location, &range)?;
        Ok(GetResult {
            payload: GetResultPayload::Stream(futures::stream::once(async { Ok(data) }).boxed()),
            meta: file.meta.clone(),
            range,
            attributes: Default::default(),
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        match self.file(location).await? {
            Some(file) => ranges.iter().map(|r| slice(&file, location, r)).collect(),
            None => self.inner.get_ranges(location, ranges).await,
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::object_store::memory::InMemory;

    #[tokio::test]
    async fn reads_are_answered_from_memory_after_the_first() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let (a, b) = (Path::from("a.parquet"), Path::from("b.parquet"));
        inner
            .put(&a, Bytes::from_static(b"0123456789").into())
            .await
            .unwrap();
        inner
            .put(&b, Bytes::from(vec![7u8; 30]).into())
            .await
            .unwrap();
        // Room for 40 bytes: files of up to 10 bytes are cached.
        let cache = Arc::new(FileCache::new(40));
        let store = cache.store(inner.clone());
        assert_eq!(store.get_range(&a, 2..5).await.unwrap(), &b"234"[..]);
        assert_eq!(cache.bytes(), 10);
        // The file is served from memory: deleting it underneath changes nothing.
        inner.delete(&a).await.unwrap();
        let got = store.get_ranges(&a, &[0..1, 8..10]).await.unwrap();
        assert_eq!(
            got,
            vec![Bytes::from_static(b"0"), Bytes::from_static(b"89")]
        );
        assert_eq!(
            store.get(&a).await.unwrap().bytes().await.unwrap(),
            &b"0123456789"[..]
        );
        // A range past the end is an error, as from the file system.
        assert!(store.get_ranges(&a, &[0..1, 5..11]).await.is_err());
        // A file over a quarter of the cache is read from the store each time.
        assert_eq!(store.get_range(&b, 0..2).await.unwrap(), &[7u8, 7][..]);
        assert_eq!(cache.bytes(), 10);
        // Files the table no longer lists are dropped.
        cache.retain(&HashSet::new());
        assert_eq!(cache.bytes(), 0);
        assert!(store.get_range(&a, 0..1).await.is_err());
    }

    #[tokio::test]
    async fn the_least_recently_used_files_go_first() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cache = Arc::new(FileCache::new(40));
        let store = cache.store(inner.clone());
        for name in ["a", "b", "c", "d", "e"] {
            inner
                .put(&Path::from(name), Bytes::from(vec![1u8; 10]).into())
                .await
                .unwrap();
        }
        for name in ["a", "b", "c", "d", "a", "e"] {
            store.get_range(&Path::from(name), 0..1).await.unwrap();
        }
        // Five files of 10 bytes in 40: "b", least recently used, went.
        assert_eq!(cache.bytes(), 40);
        inner.delete(&Path::from("b")).await.unwrap();
        inner.delete(&Path::from("a")).await.unwrap();
        assert!(store.get_range(&Path::from("b"), 0..1).await.is_err());
        assert!(store.get_range(&Path::from("a"), 0..1).await.is_ok());
    }
}
