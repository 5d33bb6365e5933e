//! The ingest journal: where `weft serve` writes a webhook delivery before it answers 2xx, ahead of the queue.
//!
//! Committing every delivery to SQLite before answering put a transaction, and a hand-off to the one thread
//! that may write, on each webhook's path: at 32 connections the server's cores sat 15-20% idle while every
//! request in flight waited for the commit in progress (benches/INGEST_RESULTS.md). Appending the delivery to a
//! file here is one `write` system call from the thread that received it. The server's importer moves what was
//! appended into the queue every few milliseconds ([`Journal::import`]), where it is deduplicated on
//! (connection, event id) as before, and deletes a segment only once every event in it is committed.
//!
//! Durability is the store's own (WAL, `synchronous=NORMAL`): an answered delivery is in the kernel's page
//! cache, so it survives the process crashing or being killed; as with SQLite's NORMAL commits, a power cut or
//! an OS crash may lose the last ones.
//!
//! On disk, beside the database: `state.db-ingest/<owner>/`, one directory per process that appends
//! (`<owner>` = `{pid}-{start ms}-{n}`), holding `lock` (an exclusive file lock kept for the journal's life) and
//! segments `{shard}-{seq:016}.open` (being appended to) and `.sealed` (closed, waiting for import). Each
//! appending thread writes to a shard of its own (as many shards as cores): two threads appending to one file
//! queue on the file's lock in the kernel. Order across shards is not kept (nor needed: workers run events
//! concurrently anyway); the queue's dedup key, not the order, is what keeps an event from running twice. A
//! directory whose lock can be taken belongs to a process that is gone (crashed, killed): the next journal to
//! look imports its segments and removes it, so several servers may share one state file.
//!
//! A segment is a run of records: `RECORD_MAGIC`, the body's length and CRC-32 (u32 little-endian each), the
//! body. The body is the connection, the event id and the kind (each a u32 length and UTF-8), the received time
//! (i64 ms) and the payload (the rest, one JSON document). A record that does not check out (a write cut short
//! by a full disk, a damaged file) is skipped to the next one that does; the skipped bytes are kept in a
//! `.damaged` file beside the segment and reported, never deleted.

use super::{create_private_dir, owner_only, NewEvent, Payload, Store, StoreError};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

/// Starts every record: what a damaged segment is searched for when reading skips to the next good record.
const RECORD_MAGIC: [u8; 4] = *b"wJr1";
/// Magic, length, CRC-32.
const HEADER: usize = 12;
/// Bodies larger than this are refused when appending and taken for damage when reading: ingest's body limit
/// is 1 MiB, and a form body turned JSON, id and kind add little to it.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Events per transaction when importing: the queue's group size.
const IMPORT_CHUNK: usize = 1024;

/// The journal this process appends to. Shared between the server's threads (`append` from any of them,
/// `import` from one).
pub struct Journal {
    /// `state.db-ingest`: every owner's directory.
    root: PathBuf,
    /// This process's directory under `root`.
    dir: PathBuf,
    /// The active segment of each shard; a thread appends to shard `its number % len`.
    shards: Box<[Shard]>,
    /// A segment partly imported when the store failed: its path and how many of its events are committed, so
    /// the retry does not count them again as duplicates.
    progress: Mutex<Option<(PathBuf, usize)>>,
    /// Held (locked) for the journal's life: tells other processes this directory's owner is alive.
    _lock: File,
}

struct Shard {
    active: RwLock<Segment>,
    /// Bytes appended to the active segment (reset when it is sealed): nothing to seal while 0.
    appended: AtomicU64,
}

struct Segment {
    file: File,
    seq: u64,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// What one [`Journal::import`] moved into the queue.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Events queued for the first time.
    pub new: usize,
    /// Events the queue already held (a re-delivery): dropped, as the store's dedup decides.
    pub duplicates: usize,
    /// Damage found in the segments read, each kept in a file of its own.
    pub damaged: Vec<Damage>,
}

/// Bytes of a segment that held no readable record, copied to `kept` before the segment was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub segment: PathBuf,
    pub kept: PathBuf,
    /// Where the first unreadable byte was, and how many bytes in all were skipped.
    pub offset: u64,
    pub bytes: u64,
}

impl Journal {
    /// The journal directory of the state database at `db`: `<db>-ingest`.
    pub fn beside(db: &Path) -> PathBuf {
        let mut name = db.as_os_str().to_owned();
        name.push("-ingest");
        PathBuf::from(name)
    }

    /// Start a journal of this process's own under `root` (created owner-only if missing). Segments left by
    /// processes that are gone are imported by the first [`Journal::import`] with `adopt`.
    pub fn open(root: &Path) -> Result<Journal, StoreError> {
        let io = |cause| StoreError::Journal { path: root.to_owned(), cause };
        create_private_dir(root).map_err(io)?;
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        // The count tells apart two journals one process opens within a millisecond (tests do).
        static OPENED: AtomicU64 = AtomicU64::new(0);
        let name = format!("{}-{started}-{}", std::process::id(), OPENED.fetch_add(1, Ordering::Relaxed));
        // Made under a dot-name and renamed once locked: another process never sees this directory unlocked
        // (and so never takes it for a dead one's).
        let making = root.join(format!(".{name}"));
        create_private_dir(&making).map_err(io)?;
        let lock = private_file(&making.join("lock"), false).map_err(io)?;
        lock.try_lock().map_err(|e| io(io::Error::other(e.to_string())))?;
        let dir = root.join(&name);
        fs::rename(&making, &dir).map_err(io)?;
        let count = std::thread::available_parallelism().map_or(1, |n| n.get()).min(16);
        let shards = (0..count)
            .map(|shard| {
                let file = private_file(&segment_path(&dir, shard, 1, OPEN), true)?;
                Ok(Shard { active: RwLock::new(Segment { file, seq: 1 }), appended: AtomicU64::new(0) })
            })
            .collect::<io::Result<Box<[Shard]>>>()
            .map_err(io)?;
        Ok(Journal { root: root.to_owned(), dir, shards, progress: Mutex::new(None), _lock: lock })
    }

    /// Where every process's journal directory is (the root given to [`Journal::open`]).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This process's directory (under the root given to [`Journal::open`]).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Append one delivery: one `write` system call. Once this returns `Ok` the delivery survives this process
    /// dying; it reaches the queue with the next import. A write the kernel cuts short is an error (the bytes it
    /// left are skipped when the segment is read).
    pub fn append(&self, event: &NewEvent) -> io::Result<()> {
        let record = encode(event)?;
        thread_local! {
            static THREAD: usize = {
                static THREADS: AtomicU64 = AtomicU64::new(0);
                THREADS.fetch_add(1, Ordering::Relaxed) as usize
            };
        }
        let shard = &self.shards[THREAD.with(|n| *n) % self.shards.len()];
        let active = shard.active.read().unwrap_or_else(PoisonError::into_inner);
        // One call, never a second for the rest: with O_APPEND each call lands whole at the end, and the rest
        // written by a second call could land after another thread's record.
        let written = (&active.file).write(&record)?;
        shard.appended.fetch_add(written as u64, Ordering::Relaxed);
        if written != record.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "the journal write was cut short"));
        }
        Ok(())
    }

    /// Whether anything was appended since the last seal.
    pub fn has_appended(&self) -> bool {
        self.shards.iter().any(|shard| shard.appended.load(Ordering::Relaxed) > 0)
    }

    /// Close each shard's active segment for import and start its next one; an empty one is left as it is.
    /// Waits for appends in progress: a sealed segment is never written again.
    fn seal(&self) -> io::Result<()> {
        for (number, shard) in self.shards.iter().enumerate() {
            self.seal_shard(number, shard)?;
        }
        Ok(())
    }

    fn seal_shard(&self, number: usize, shard: &Shard) -> io::Result<()> {
        let mut active = shard.active.write().unwrap_or_else(PoisonError::into_inner);
        if shard.appended.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        // The next segment first: should it fail, appends go on into the current one, which is never sealed
        // without a successor to take over (a sealed segment may be imported and deleted at any time).
        let next_path = segment_path(&self.dir, number, active.seq + 1, OPEN);
        let next = private_file(&next_path, true)?;
        if let Err(e) = fs::rename(
            segment_path(&self.dir, number, active.seq, OPEN),
            segment_path(&self.dir, number, active.seq, SEALED),
        ) {
            // Not sealed: the current segment stays active, and the next try starts from a clean slate.
            let _ = fs::remove_file(&next_path);
            return Err(e);
        }
        *active = Segment { file: next, seq: active.seq + 1 };
        shard.appended.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Seal each shard's active segment and move every sealed one into `store`, each shard's oldest first,
    /// deleting each once its events are committed; what was queued is added to `imported`, also when the call
    /// fails part-way. With `adopt`, also the segments of processes that are gone. What was not imported stays
    /// on disk for the next call: the store failing stops the call; a segment that cannot be read (or removed)
    /// is passed over for this call, so that it does not hold up the others, and its error is returned at the
    /// end.
    pub fn import(&self, store: &dyn Store, adopt: bool, imported: &mut Imported) -> Result<(), StoreError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |cause| StoreError::Journal { path, cause }
        };
        let mut passed_over = None;
        let mut each = |segment: &Path, imported: &mut Imported| match self.import_segment(store, segment, imported) {
            Err(e @ StoreError::Journal { .. }) => {
                passed_over.get_or_insert(e);
                Ok(())
            }
            other => other,
        };
        self.seal().map_err(io(&self.dir))?;
        for segment in segments(&self.dir, &[SEALED]).map_err(io(&self.dir))? {
            each(&segment, imported)?;
        }
        if adopt {
            for (dir, lock) in orphans(&self.root, &self.dir).map_err(io(&self.root))? {
                for segment in segments(&dir, &[SEALED, OPEN]).map_err(io(&dir))? {
                    each(&segment, imported)?;
                }
                drop(lock);
                // Only the lock file and any `.damaged` copies are left: the directory goes once it is empty.
                let _ = fs::remove_file(dir.join("lock"));
                let _ = fs::remove_dir(&dir);
            }
        }
        passed_over.map_or(Ok(()), Err)
    }

    fn import_segment(&self, store: &dyn Store, path: &Path, imported: &mut Imported) -> Result<(), StoreError> {
        let io = |cause| StoreError::Journal { path: path.to_owned(), cause };
        let bytes = fs::read(path).map_err(io)?;
        let read = read_segment(&bytes);
        let mut progress = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        let mut done = match progress.as_ref() {
            Some((p, done)) if p == path => *done,
            _ => 0,
        };
        for chunk in read.events[done.min(read.events.len())..].chunks(IMPORT_CHUNK) {
            match store.enqueue_events(chunk) {
                Ok(answers) => {
                    let new = answers.iter().filter(|a| matches!(a, super::Enqueued::New(_))).count();
                    imported.new += new;
                    imported.duplicates += answers.len() - new;
                    done += chunk.len();
                }
                Err(e) => {
                    *progress = Some((path.to_owned(), done));
                    return Err(e);
                }
            }
        }
        if progress.as_ref().is_some_and(|(p, _)| p == path) {
            *progress = None;
        }
        if let Some(offset) = read.skipped.first().map(|(start, _)| *start) {
            let kept = path.with_extension("damaged");
            let mut copy = Vec::new();
            for (start, end) in &read.skipped {
                copy.extend_from_slice(&bytes[*start..*end]);
            }
            // Owner-only, like the segment: the bytes may hold a customer's details.
            private_file(&kept, false).and_then(|mut file| file.write_all(&copy)).map_err(io)?;
            imported.damaged.push(Damage {
                segment: path.to_owned(),
                kept,
                offset: offset as u64,
                bytes: copy.len() as u64,
            });
        }
        fs::remove_file(path).map_err(io)
    }

    /// Bytes in segments waiting for import under `root` (every owner's), and how many segments: what `weft
    /// events` reports while no server imports them.
    pub fn waiting(root: &Path) -> io::Result<(u64, usize)> {
        let mut total = (0, 0);
        let Ok(owners) = fs::read_dir(root) else { return Ok(total) };
        for owner in owners {
            let owner = owner?.path();
            if !owner.is_dir() {
                continue;
            }
            for segment in segments(&owner, &[SEALED, OPEN])? {
                let len = fs::metadata(&segment)?.len();
                if len > 0 {
                    total = (total.0 + len, total.1 + 1);
                }
            }
        }
        Ok(total)
    }
}

impl Drop for Journal {
    /// A journal left with nothing to import (a clean shutdown) removes its directory; otherwise it stays, with
    /// its lock released, for the next journal to adopt.
    fn drop(&mut self) {
        if self.has_appended() || segments(&self.dir, &[SEALED]).is_ok_and(|sealed| !sealed.is_empty()) {
            return;
        }
        if let Ok(open) = segments(&self.dir, &[OPEN]) {
            for segment in open {
                let _ = fs::remove_file(segment);
            }
        }
        let _ = fs::remove_file(self.dir.join("lock"));
        let _ = fs::remove_dir(&self.dir);
    }
}

const OPEN: &str = "open";
const SEALED: &str = "sealed";

fn segment_path(dir: &Path, shard: usize, seq: u64, state: &str) -> PathBuf {
    dir.join(format!("{shard}-{seq:016}.{state}"))
}

/// The segments in `dir` with one of `states`, each shard's in sequence order.
fn segments(dir: &Path, states: &[&str]) -> io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<io::Result<Vec<_>>>()?
        .into_iter()
        .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| states.contains(&e)))
        .collect();
    found.sort();
    Ok(found)
}

/// Owner directories under `root` (other than `mine`) whose lock could be taken: their process is gone. Each
/// comes with its lock, held while it is imported so that two adopters never import it at once.
fn orphans(root: &Path, mine: &Path) -> io::Result<Vec<(PathBuf, File)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(root)? {
        let dir = entry?.path();
        let hidden = dir.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.'));
        if dir == mine || hidden || !dir.is_dir() {
            continue;
        }
        let Ok(lock) = File::open(dir.join("lock")) else { continue };
        if lock.try_lock().is_ok() {
            found.push((dir, lock));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// A file readable by its owner only (a journal holds customers' details): a new segment to append to, or a
/// file to lock or to write whole.
fn private_file(path: &Path, append: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    if append {
        options.append(true).create_new(true);
    } else {
        options.write(true).create(true).truncate(true);
    }
    owner_only(&mut options).open(path)
}

/// One event as a record (see the module's doc).
fn encode(event: &NewEvent) -> io::Result<Vec<u8>> {
    let payload = event.payload.as_str().as_bytes();
    let fields = [event.connection.as_bytes(), event.event_id.as_bytes(), event.kind.as_bytes()];
    let body_len = fields.iter().map(|f| 4 + f.len()).sum::<usize>() + 8 + payload.len();
    if body_len > MAX_BODY {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "the event is too large for the journal"));
    }
    let mut record = Vec::with_capacity(HEADER + body_len);
    record.extend_from_slice(&RECORD_MAGIC);
    record.extend_from_slice(&(body_len as u32).to_le_bytes());
    record.extend_from_slice(&[0; 4]);
    for field in fields {
        record.extend_from_slice(&(field.len() as u32).to_le_bytes());
        record.extend_from_slice(field);
    }
    record.extend_from_slice(&event.received_at_ms.to_le_bytes());
    record.extend_from_slice(payload);
    let crc = crc32fast::hash(&record[HEADER..]);
    record[8..HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(record)
}

/// What a segment held: its events in order, and the byte ranges that held no readable record.
#[derive(Debug, Default)]
pub struct SegmentRead {
    pub events: Vec<NewEvent>,
    pub skipped: Vec<(usize, usize)>,
}

/// Read every record of a segment. Never fails and never panics: bytes that are not a whole, checked record are
/// skipped up to the next place where one starts, and listed.
pub fn read_segment(bytes: &[u8]) -> SegmentRead {
    let mut read = SegmentRead::default();
    let mut at = 0;
    let mut bad_from: Option<usize> = None;
    while at < bytes.len() {
        match record_at(bytes, at) {
            Some((event, next)) => {
                if let Some(start) = bad_from.take() {
                    read.skipped.push((start, at));
                }
                read.events.push(event);
                at = next;
            }
            None => {
                bad_from.get_or_insert(at);
                // On to the next place the magic appears (a record can only start there).
                at = bytes[at + 1..]
                    .windows(RECORD_MAGIC.len())
                    .position(|w| w == RECORD_MAGIC)
                    .map_or(bytes.len(), |i| at + 1 + i);
            }
        }
    }
    if let Some(start) = bad_from {
        read.skipped.push((start, bytes.len()));
    }
    read
}

/// The record starting at `at`, and where the next one starts, if it is whole and its checksum and fields agree.
fn record_at(bytes: &[u8], at: usize) -> Option<(NewEvent, usize)> {
    let header = bytes.get(at..at.checked_add(HEADER)?)?;
    if header[..4] != RECORD_MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[8..12].try_into().ok()?);
    if len > MAX_BODY {
        return None;
    }
    let end = at + HEADER + len;
    let body = bytes.get(at + HEADER..end)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let mut rest = body;
    let mut text = || -> Option<String> {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let field = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
        String::from_utf8(field.to_vec()).ok()
    };
    let (connection, event_id, kind) = (text()?, text()?, text()?);
    let received_at_ms = i64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    // The payload was checked to be JSON when it was received; the checksum says these are the same bytes.
    let payload = Payload::checked(std::str::from_utf8(&rest[8..]).ok()?);
    Some((NewEvent { connection, event_id, kind, payload, received_at_ms }, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: usize) -> NewEvent {
        NewEvent {
            connection: "razorpay".into(),
            event_id: format!("evt_{i}"),
            kind: "payment.captured".into(),
            payload: Payload::checked(&format!(r#"{{"n":{i},"name":"Jo\u00e3o"}}"#)),
            received_at_ms: 1_700_000_000_000 + i as i64,
        }
    }

    #[test]
    fn records_read_back_as_written() {
        let bytes: Vec<u8> = (0..5).flat_map(|i| encode(&event(i)).unwrap()).collect();
        let read = read_segment(&bytes);
        assert_eq!(read.events, (0..5).map(event).collect::<Vec<_>>());
        assert!(read.skipped.is_empty());
    }

    #[test]
    fn a_cut_or_damaged_record_is_skipped_to_the_next_good_one() {
        let records: Vec<Vec<u8>> = (0..4).map(|i| encode(&event(i)).unwrap()).collect();
        // Record 1 cut short (a write the kernel stopped), record 2 with one byte flipped, then a torn tail.
        let mut bytes = records[0].clone();
        let cut = &records[1][..records[1].len() / 2];
        bytes.extend_from_slice(cut);
        let mut flipped = records[2].clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        bytes.extend_from_slice(&flipped);
        bytes.extend_from_slice(&records[3]);
        bytes.extend_from_slice(&records[0][..7]);
        let read = read_segment(&bytes);
        assert_eq!(read.events, vec![event(0), event(3)]);
        let r0 = records[0].len();
        assert_eq!(read.skipped, vec![(r0, r0 + cut.len() + flipped.len()), (bytes.len() - 7, bytes.len())]);
    }

    proptest::proptest! {
        /// Any bytes at all read without a panic, and whatever is not a record is accounted as skipped.
        #[test]
        fn any_bytes_read_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let read = read_segment(&bytes);
            let skipped: usize = read.skipped.iter().map(|(a, b)| b - a).sum();
            proptest::prop_assert!(skipped <= bytes.len());
        }

        /// Junk between records (a cut write, a damaged stretch) loses no record around it.
        #[test]
        fn junk_between_records_loses_none_of_them(
            junk in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 1..6),
        ) {
            let mut bytes = Vec::new();
            let mut expected = (Vec::new(), 0);
            for (i, junk) in junk.iter().enumerate() {
                // A junk stretch that happened to spell the magic could hide the record's start: not junk a
                // reader could tell apart, so not generated.
                let junk: Vec<u8> = junk.iter().map(|b| if *b == b'w' { b'x' } else { *b }).collect();
                bytes.extend_from_slice(&junk);
                expected.1 += junk.len();
                bytes.extend_from_slice(&encode(&event(i)).unwrap());
                expected.0.push(event(i));
            }
            let read = read_segment(&bytes);
            let skipped: usize = read.skipped.iter().map(|(a, b)| b - a).sum();
            proptest::prop_assert_eq!(read.events, expected.0);
            proptest::prop_assert_eq!(skipped, expected.1);
        }
    }
}
