//! A thin SQLite VFS over the default one (`unix`) that writes a transaction's WAL frames with one `pwrite`
//! instead of two per page.
//!
//! SQLite appends each WAL frame as two writes, its 24-byte header and then the page: a webhook group's commit
//! of ~12 pages is ~24 system calls, and on this project's 2-core test machine a call costs ~0.7 µs on top of
//! copying its bytes (benches/INGEST_RESULTS.md: 7 frames written as 14 calls cost 16.2 µs, as one call 6.7 µs).
//! Here a WAL file's contiguous writes collect in memory and go to the file together:
//! - when the page after a commit frame's header arrives (the frame that ends a transaction: its header's
//!   "database size" field is non-zero), from inside that `xWrite`, so a failure is SQLite's write error as
//!   before and the commit fails instead of being lost;
//! - before the WAL index makes new frames visible to other connections: SQLite calls the database file's
//!   `xShmBarrier` between writing the two copies of the index header, and readers take a header only when both
//!   copies agree (this covers the frames whose checksums SQLite rewrites after the commit frame);
//! - before anything else touches the file (read, sync, truncate, size, file control, close), on a write that
//!   does not continue the pending bytes, and past [`MAX_PENDING`].
//!
//! Nothing else changes: the same bytes reach the same offsets in the same order as without the layer, only in
//! fewer calls, and a commit returns only once its bytes are written. Databases opened this way are ordinary
//! SQLite files. Used only with WAL in shared-memory mode (weft never sets `locking_mode=EXCLUSIVE`, which
//! would skip `xShmBarrier`).

use rusqlite::ffi;
use std::ffi::CStr;
use std::os::raw::{c_int, c_void};
use std::sync::OnceLock;

/// The name connections open with ([`register`] first).
pub(super) const VFS: &CStr = c"weft-wal-buffer";

/// Pending bytes beyond which a WAL file writes them out without waiting for the commit (a big transaction): a
/// webhook group's commit fits (~12 frames), and a file's buffer never grows past this and one page.
const MAX_PENDING: usize = 128 * 1024;

/// The most one write to the default VFS may carry: the unix VFS writes `n & 0x1ffff` bytes of an `n`-byte
/// write (it never gets more from SQLite itself) and reports the rest as a full disk.
const MAX_WRITE: usize = 0x1ffff;

/// Register the VFS with SQLite, once per process. `Err` if SQLite has no default VFS to wrap.
pub(super) fn register() -> Result<(), &'static str> {
    static REGISTERED: OnceLock<Result<(), &'static str>> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        // SAFETY: `sqlite3_vfs_find(NULL)` returns the default VFS or null; VFS objects live as long as the
        // process. The new VFS is leaked for the same reason: SQLite keeps a pointer to it.
        unsafe {
            let real = ffi::sqlite3_vfs_find(std::ptr::null());
            if real.is_null() {
                return Err("SQLite has no default VFS");
            }
            let vfs = Box::leak(Box::new(ffi::sqlite3_vfs {
                szOsFile: (*real).szOsFile + std::mem::size_of::<File>() as c_int,
                pNext: std::ptr::null_mut(),
                zName: VFS.as_ptr(),
                pAppData: real.cast(),
                xOpen: Some(open),
                // Everything but opening a file is the default VFS's own: the unix VFS's other methods read
                // nothing from the VFS object they are given but `mxPathname`, which is copied.
                ..*real
            }));
            match ffi::sqlite3_vfs_register(vfs, 0) {
                ffi::SQLITE_OK => Ok(()),
                _ => Err("SQLite refused to register the WAL-buffer VFS"),
            }
        }
    })
}

/// The file object SQLite allocates (`szOsFile` bytes): this header, then the default VFS's own file object.
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    /// The default VFS's file, in the same allocation right after this header.
    real: *mut ffi::sqlite3_file,
    /// A WAL file's pending writes (null for other files).
    pending: *mut Pending,
    /// A main database file: its WAL file while that is open (null otherwise), flushed before the WAL index
    /// publishes frames. A WAL file: the database file that points at it.
    peer: *mut File,
}

/// Bytes written to a WAL file and not yet passed on: `data` goes at offset `start`.
struct Pending {
    start: i64,
    data: Vec<u8>,
    /// The last write was the header of a frame that ends a transaction: write out after its page.
    commit_header: bool,
}

const FRAME_HEADER: usize = 24;

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite hands `open` a block of our `szOsFile` bytes at `file`, 8-byte aligned; `File` is four
    // pointers, so the default VFS's file object right after it is aligned too. Every field is set before use.
    unsafe {
        let real_vfs: *mut ffi::sqlite3_vfs = (*vfs).pAppData.cast();
        let this = file.cast::<File>();
        let real = file.cast::<u8>().add(std::mem::size_of::<File>()).cast::<ffi::sqlite3_file>();
        (*this).base.pMethods = std::ptr::null();
        (*this).real = real;
        (*this).pending = std::ptr::null_mut();
        (*this).peer = std::ptr::null_mut();
        let Some(real_open) = (*real_vfs).xOpen else { return ffi::SQLITE_CANTOPEN };
        let rc = real_open(real_vfs, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            // SQLite calls xClose only when pMethods is set; the default VFS cleaned up after itself.
            return rc;
        }
        (*this).base.pMethods = &METHODS;
        if flags & ffi::SQLITE_OPEN_WAL != 0 && !name.is_null() {
            (*this).pending = Box::into_raw(Box::new(Pending {
                start: 0,
                data: Vec::with_capacity(MAX_PENDING),
                commit_header: false,
            }));
            // The database file this WAL belongs to, if it was opened through this VFS too.
            let db = ffi::sqlite3_database_file_object(name).cast::<File>();
            if !db.is_null() && std::ptr::eq((*db).base.pMethods, &METHODS) {
                (*db).peer = this;
                (*this).peer = db;
            }
        }
        ffi::SQLITE_OK
    }
}

/// The default VFS's file and methods behind `file`.
///
/// # Safety
/// `file` is a file this VFS opened successfully and has not closed.
unsafe fn real(file: *mut ffi::sqlite3_file) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    // SAFETY: as documented; the default VFS's methods table is static.
    unsafe {
        let real = (*file.cast::<File>()).real;
        (real, &*(*real).pMethods)
    }
}

/// Write out a WAL file's pending bytes (nothing for other files or when none are pending).
///
/// # Safety
/// As [`real`].
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: as documented; `pending` is ours and only touched through this file, which SQLite uses from one
    // thread at a time.
    unsafe {
        match (*file.cast::<File>()).pending.as_mut() {
            Some(pending) => write_out(file, pending),
            None => ffi::SQLITE_OK,
        }
    }
}

/// Write `pending` (the WAL file `file`'s) to the file.
///
/// # Safety
/// As [`real`].
unsafe fn write_out(file: *mut ffi::sqlite3_file, pending: &mut Pending) -> c_int {
    pending.commit_header = false;
    if pending.data.is_empty() {
        return ffi::SQLITE_OK;
    }
    // SAFETY: as documented.
    let (real, methods) = unsafe { real(file) };
    let Some(write) = methods.xWrite else { return ffi::SQLITE_IOERR_WRITE };
    let mut rc = ffi::SQLITE_OK;
    let mut offset = pending.start;
    for chunk in pending.data.chunks(MAX_WRITE) {
        // SAFETY: `chunk` is readable and at most MAX_WRITE bytes (a c_int); the default VFS keeps no pointer.
        rc = unsafe { write(real, chunk.as_ptr().cast(), chunk.len() as c_int, offset) };
        if rc != ffi::SQLITE_OK {
            break;
        }
        offset += chunk.len() as i64;
    }
    // Written or not, these bytes are settled: on an error SQLite fails the transaction and rolls it back.
    pending.data.clear();
    rc
}

/// `flush`, then `call` on the default VFS's file.
macro_rules! flushed {
    ($file:expr, $method:ident, |$real:ident, $f:ident| $call:expr) => {{
        // SAFETY: SQLite calls file methods only on files this VFS opened and has not closed.
        unsafe {
            let rc = flush($file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            let ($real, methods) = real($file);
            match methods.$method {
                Some($f) => $call,
                None => ffi::SQLITE_IOERR,
            }
        }
    }};
}

/// Pass a call straight to the default VFS's file.
macro_rules! forward {
    ($file:expr, $method:ident, $missing:expr, |$real:ident, $f:ident| $call:expr) => {{
        // SAFETY: SQLite calls file methods only on files this VFS opened and has not closed.
        unsafe {
            let ($real, methods) = real($file);
            match methods.$method {
                Some($f) => $call,
                None => $missing,
            }
        }
    }};
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file once, after its last other call.
    unsafe {
        let rc = flush(file);
        let this = file.cast::<File>();
        if !(*this).peer.is_null() {
            (*(*this).peer).peer = std::ptr::null_mut();
            (*this).peer = std::ptr::null_mut();
        }
        if !(*this).pending.is_null() {
            drop(Box::from_raw((*this).pending));
            (*this).pending = std::ptr::null_mut();
        }
        let (real, methods) = real(file);
        let closed = methods.xClose.map_or(ffi::SQLITE_OK, |f| f(real));
        if rc != ffi::SQLITE_OK {
            rc
        } else {
            closed
        }
    }
}

unsafe extern "C" fn read(file: *mut ffi::sqlite3_file, buf: *mut c_void, amount: c_int, offset: i64) -> c_int {
    flushed!(file, xRead, |real, f| f(real, buf, amount, offset))
}

unsafe extern "C" fn write(file: *mut ffi::sqlite3_file, buf: *const c_void, amount: c_int, offset: i64) -> c_int {
    // SAFETY: SQLite passes `amount` readable bytes at `buf`; see `flush` for `pending`.
    unsafe {
        let Some(pending) = (*file.cast::<File>()).pending.as_mut() else {
            let (real, methods) = real(file);
            return methods.xWrite.map_or(ffi::SQLITE_IOERR_WRITE, |f| f(real, buf, amount, offset));
        };
        let Ok(len) = usize::try_from(amount) else { return ffi::SQLITE_IOERR_WRITE };
        let bytes = std::slice::from_raw_parts(buf.cast::<u8>(), len);
        let continues = !pending.data.is_empty() && pending.start + pending.data.len() as i64 == offset;
        if !continues {
            let rc = write_out(file, pending);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            pending.start = offset;
        }
        let ends_transaction = pending.commit_header && len != FRAME_HEADER;
        pending.data.extend_from_slice(bytes);
        // A frame header: bytes 4..8 are the database size after a commit, 0 in every other frame.
        pending.commit_header = len == FRAME_HEADER && bytes[4..8] != [0, 0, 0, 0];
        if ends_transaction || pending.data.len() >= MAX_PENDING {
            return write_out(file, pending);
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    flushed!(file, xTruncate, |real, f| f(real, size))
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    flushed!(file, xSync, |real, f| f(real, flags))
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    flushed!(file, xFileSize, |real, f| f(real, size))
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xLock, ffi::SQLITE_IOERR_LOCK, |real, f| f(real, level))
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xUnlock, ffi::SQLITE_IOERR_UNLOCK, |real, f| f(real, level))
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    forward!(file, xCheckReservedLock, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK, |real, f| f(real, out))
}

unsafe extern "C" fn file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    flushed!(file, xFileControl, |real, f| f(real, op, arg))
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    forward!(file, xSectorSize, 4096, |real, f| f(real))
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    forward!(file, xDeviceCharacteristics, 0, |real, f| f(real))
}

unsafe extern "C" fn shm_map(
    file: *mut ffi::sqlite3_file,
    page: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    forward!(file, xShmMap, ffi::SQLITE_IOERR_SHMMAP, |real, f| f(real, page, size, extend, out))
}

unsafe extern "C" fn shm_lock(file: *mut ffi::sqlite3_file, offset: c_int, n: c_int, flags: c_int) -> c_int {
    forward!(file, xShmLock, ffi::SQLITE_IOERR_SHMLOCK, |real, f| f(real, offset, n, flags))
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: called on a database file; its WAL peer, if any, is open (it unlinks itself on close) and used
    // by the same connection, hence the same thread.
    unsafe {
        let wal = (*file.cast::<File>()).peer;
        if !wal.is_null() && flush(wal.cast()) != ffi::SQLITE_OK {
            // The barrier cannot report an error, and SQLite is about to publish frames that did not reach the
            // file: another connection would read pages that are not there. Stop here instead; on the next
            // start SQLite rebuilds the WAL index from what the file holds, without the failed transaction
            // (whose sender got no answer, so it retries).
            eprintln!(
                "weft: could not write the SQLite WAL before publishing a commit; stopping to keep the store intact"
            );
            std::process::abort();
        }
        let (real, methods) = real(file);
        if let Some(f) = methods.xShmBarrier {
            f(real);
        }
    }
}

unsafe extern "C" fn shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    forward!(file, xShmUnmap, ffi::SQLITE_OK, |real, f| f(real, delete))
}

unsafe extern "C" fn fetch(file: *mut ffi::sqlite3_file, offset: i64, amount: c_int, out: *mut *mut c_void) -> c_int {
    flushed!(file, xFetch, |real, f| f(real, offset, amount, out))
}

unsafe extern "C" fn unfetch(file: *mut ffi::sqlite3_file, offset: i64, page: *mut c_void) -> c_int {
    forward!(file, xUnfetch, ffi::SQLITE_OK, |real, f| f(real, offset, page))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, OpenFlags};
    use std::path::Path;

    const TABLE: &str = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, v BLOB)";

    /// The same table in memory: what the file must hold after the same commits.
    fn in_memory() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(TABLE).unwrap();
        conn
    }

    /// A connection through this VFS in WAL mode, as the store opens its file. `cache_pages` small makes big
    /// transactions spill pages into the WAL before their commit (and rewrite them: the checksum path).
    fn buffered(path: &Path, cache_pages: i64) -> Connection {
        register().unwrap();
        let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), VFS).unwrap();
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0)).unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.pragma_update(None, "cache_size", cache_pages).unwrap();
        conn.execute_batch(TABLE).unwrap();
        conn
    }

    /// Transaction `n`: a few rows, every 7th big enough to pass MAX_PENDING and the cache (spills, rewrites),
    /// every 5th also rewriting earlier rows.
    fn commit(conn: &mut Connection, n: u64) {
        let tx = conn.transaction().unwrap();
        let rows = if n % 7 == 3 { 400 } else { 1 + n % 5 };
        for r in 0..rows {
            let size = 100 + ((n * 31 + r * 17) % 5000) as usize;
            tx.execute("INSERT INTO t (k, v) VALUES (?1, ?2)", (format!("{n}-{r}"), vec![(n % 251) as u8; size]))
                .unwrap();
        }
        if n.is_multiple_of(5) {
            tx.execute("UPDATE t SET v = zeroblob(300) WHERE id % 13 = ?1", [(n % 13) as i64]).unwrap();
        }
        tx.commit().unwrap();
    }

    /// What a reader through the default VFS sees: rows and a digest of their contents.
    fn contents(path: &Path) -> (i64, i64) {
        let plain = Connection::open(path).unwrap();
        assert_eq!(plain.query_row("PRAGMA integrity_check", [], |row| row.get::<_, String>(0)).unwrap(), "ok");
        digest(&plain)
    }

    /// The rows of `t` and a digest of their contents.
    fn digest(conn: &Connection) -> (i64, i64) {
        conn.query_row("SELECT count(*), coalesce(sum(length(v) * 7 + unicode(k) + id), 0) FROM t", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .unwrap()
    }

    #[test]
    fn another_connection_reads_every_commit_at_once() {
        let dir = tempfile_dir("visible");
        let path = dir.join("t.db");
        let mut conn = buffered(&path, 20);
        let mut mirror = in_memory();
        for n in 0..60 {
            commit(&mut conn, n);
            commit(&mut mirror, n);
            assert_eq!(contents(&path), digest(&mirror), "after commit {n}");
        }
    }

    /// The last of these (38) is a big transaction whose pages spill into the WAL and are written again before
    /// its commit, after which SQLite rewrites the frames' checksums: the crash comes right after that.
    const CRASH_COMMITS: u64 = 39;

    /// The child half of `commits_survive_a_crash_of_the_process`: commits, says how many, and aborts without
    /// closing (no checkpoint, nothing flushed on the way out).
    #[test]
    #[ignore = "run by commits_survive_a_crash_of_the_process in a child process"]
    fn crashing_writer() {
        let path = std::path::PathBuf::from(std::env::var("WEFT_WALBUF_CRASH_DB").expect("run by the parent test"));
        let mut conn = buffered(&path, 20);
        for n in 0..CRASH_COMMITS {
            commit(&mut conn, n);
        }
        println!("committed {CRASH_COMMITS}");
        std::process::abort();
    }

    #[test]
    fn commits_survive_a_crash_of_the_process() {
        let dir = tempfile_dir("crash");
        let path = dir.join("t.db");
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "store::sqlite::walbuf::tests::crashing_writer", "--ignored", "--nocapture"])
            .env("WEFT_WALBUF_CRASH_DB", &path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("committed {CRASH_COMMITS}")),
            "the child did not commit: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "the child was meant to abort");
        assert!(dir.join("t.db-wal").exists(), "the child's WAL is left for recovery");
        let mut mirror = in_memory();
        for n in 0..CRASH_COMMITS {
            commit(&mut mirror, n);
        }
        assert_eq!(contents(&path), digest(&mirror));
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("weft-walbuf-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
