//! Room history on disk (`--data-dir`): the last `--history` messages of each room and its
//! sequence number survive a restart.
//!
//! ```text
//! Hub::say ──append (no wait)──▶ channel ──▶ writer thread: take everything queued,
//!                                              one transaction, commit (fsync), repeat
//! Hub::room (a room not in memory) ──▶ load: last seq + last N messages
//! ```
//!
//! The engine is `redb`: an embedded, pure-Rust, ACID key-value store in one file, with
//! copy-on-write B-trees and checksums, so a crash leaves the last committed state and a damaged
//! file is detected rather than read. (SQLite through `rusqlite` would do the same job but
//! compiles a C library into the binary; chatd needs no SQL.)
//!
//! # What is durable when
//!
//! - A message is broadcast first and written after: the fan-out never waits for the disk. The
//!   writer commits whatever has queued up in one transaction (group commit), so a message is
//!   durable once the commit after it completes: usually within one `fsync` (milliseconds) of
//!   appearing in the room, longer only while the disk is slower than the chat.
//! - `SIGTERM`/`SIGINT`: chatd stops accepting messages, commits everything queued and marks the
//!   store clean. Nothing is lost; sequence numbers continue exactly.
//! - A crash (`SIGKILL`, power loss): messages broadcast but not yet committed are lost. So that a
//!   sequence number is never given to two different messages, a store that was not closed
//!   cleanly resumes every room's numbering [`CRASH_GAP`] past its last committed number: clients
//!   see a jump, never a reuse, and a `since` from before the jump is answered with
//!   `recovered: false` (what was lost is unknown).
//! - A file that can't be opened or read is reported at start-up and left alone; chatd does not
//!   replace it.

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Condvar, Mutex, PoisonError};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tracing::{error, info, warn};

/// (room, seq) → the message's JSON line.
const MESSAGES: TableDefinition<'_, (&str, u64), &str> = TableDefinition::new("messages");
/// room → the last sequence number committed.
const ROOMS: TableDefinition<'_, &str, u64> = TableDefinition::new("rooms");
/// "clean" → 1 after an orderly shutdown, 0 while running.
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// How far numbering jumps after a crash: more messages than can be broadcast between two
/// commits.
pub const CRASH_GAP: u64 = 1_000_000;

/// A room as stored: the sequence number to continue from, its last messages (oldest first),
/// and the lowest `since` that can still be recovered exactly: after a crash, messages may have
/// been broadcast and lost, so only `since` at or past the resumed number is known complete.
pub type Loaded = (u64, VecDeque<(u64, Arc<str>)>, u64);

/// Why the store can't be used. One line for the operator.
#[derive(Debug)]
pub struct StoreError(String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

enum Job {
    Message { room: String, seq: u64, json: Arc<str> },
    Close(mpsc::Sender<()>),
}

/// The history store. Cheap to share (`Arc` inside).
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
    jobs: mpsc::Sender<Job>,
    appended: Arc<AtomicU64>,
    committed: Arc<(Mutex<u64>, Condvar)>,
    gap: u64,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) `DATA_DIR/history.redb`, keeping `history` messages per room, and
    /// starts the writer thread.
    pub fn open(data_dir: &Path, history: usize) -> Result<Store, StoreError> {
        crate::acme::private_dir(data_dir).map_err(|e| StoreError(e.to_string()))?;
        let path = data_dir.join("history.redb");
        let damaged = |e: &dyn fmt::Display| {
            StoreError(format!(
                "the history store {} can't be used ({e}); chatd left it untouched: restore it from a backup \
                 or move it away to start with empty history",
                path.display()
            ))
        };
        let db = Database::create(&path).map_err(|e| damaged(&e))?;
        let clean = {
            let txn = db.begin_write().map_err(|e| damaged(&e))?;
            let clean = {
                let mut meta = txn.open_table(META).map_err(|e| damaged(&e))?;
                txn.open_table(ROOMS).map_err(|e| damaged(&e))?;
                txn.open_table(MESSAGES).map_err(|e| damaged(&e))?;
                let fresh = meta.get("clean").map_err(|e| damaged(&e))?.is_none();
                let clean = fresh || meta.get("clean").map_err(|e| damaged(&e))?.is_some_and(|v| v.value() == 1);
                meta.insert("clean", 0).map_err(|e| damaged(&e))?;
                clean
            };
            txn.commit().map_err(|e| damaged(&e))?;
            clean
        };
        if !clean {
            warn!(
                "{} was not closed cleanly (a crash?): messages after the last commit are lost, and each room's \
                 numbering resumes {CRASH_GAP} higher so no number is reused",
                path.display()
            );
        }
        let db = Arc::new(db);
        let (jobs, rx) = mpsc::channel();
        let committed = Arc::new((Mutex::new(0u64), Condvar::new()));
        let thread = {
            let (db, committed) = (db.clone(), committed.clone());
            std::thread::Builder::new()
                .name("chatd-store".into())
                .spawn(move || writer(db, rx, history, committed))
                .map_err(|e| StoreError(format!("cannot start the history writer: {e}")))?
        };
        info!("history store {}", path.display());
        Ok(Store {
            db,
            path,
            jobs,
            appended: Arc::new(AtomicU64::new(0)),
            committed,
            gap: if clean { 0 } else { CRASH_GAP },
            writer: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// The last sequence number and the last `history` messages of `room` (oldest first).
    /// Waits for queued writes first, so a room evicted from memory and loaded again never goes
    /// back in numbering.
    pub fn load(&self, room: &str, history: usize) -> Result<Loaded, StoreError> {
        self.wait_committed();
        let read = |e: &dyn fmt::Display| StoreError(format!("reading {}: {e}", self.path.display()));
        let txn = self.db.begin_read().map_err(|e| read(&e))?;
        let rooms = txn.open_table(ROOMS).map_err(|e| read(&e))?;
        // A room with nothing committed may still have had messages lost in a crash.
        let Some(seq) = rooms.get(room).map_err(|e| read(&e))?.map(|v| v.value()) else {
            return Ok((self.gap, VecDeque::new(), self.gap));
        };
        let messages = txn.open_table(MESSAGES).map_err(|e| read(&e))?;
        let from = seq.saturating_sub(history as u64) + 1;
        let mut out = VecDeque::new();
        for entry in messages.range((room, from)..=(room, seq)).map_err(|e| read(&e))? {
            let (key, value) = entry.map_err(|e| read(&e))?;
            out.push_back((key.value().1, Arc::from(value.value())));
        }
        let resumed = seq + self.gap;
        Ok((resumed, out, if self.gap == 0 { 0 } else { resumed }))
    }

    /// Queues a message for the next commit. Never waits.
    pub fn append(&self, room: &str, seq: u64, json: Arc<str>) {
        self.appended.fetch_add(1, SeqCst);
        if self.jobs.send(Job::Message { room: room.to_owned(), seq, json }).is_err() {
            error!("history writer is gone: message {seq} of {room} is not stored");
        }
    }

    fn wait_committed(&self) {
        let target = self.appended.load(SeqCst);
        let (lock, changed) = &*self.committed;
        let mut done = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while *done < target {
            done = changed.wait(done).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Commits everything queued and marks the store clean (orderly shutdown), then waits for
    /// the writer to finish. Blocking.
    pub fn close(&self) {
        let (tx, rx) = mpsc::channel();
        if self.jobs.send(Job::Close(tx)).is_ok() {
            let _ = rx.recv();
        }
        self.join();
    }

    fn join(&self) {
        let handle = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// Stops the writer without committing the clean mark, as a crash would (tests).
    #[cfg(test)]
    fn abandon(self) {
        let Store { jobs, writer, .. } = self;
        drop(jobs);
        let handle = writer.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

/// The writer thread: group commits until the channel closes or `Close` arrives.
fn writer(db: Arc<Database>, jobs: mpsc::Receiver<Job>, history: usize, committed: Arc<(Mutex<u64>, Condvar)>) {
    let mut closing = None;
    while closing.is_none() {
        let Ok(first) = jobs.recv() else { return };
        let mut batch = Vec::new();
        for job in std::iter::once(first).chain(std::iter::from_fn(|| jobs.try_recv().ok())) {
            match job {
                Job::Message { room, seq, json } => batch.push((room, seq, json)),
                Job::Close(done) => {
                    closing = Some(done);
                    break;
                }
            }
        }
        let count = batch.len() as u64;
        if let Err(e) = commit(&db, &batch, history, closing.is_some()) {
            error!("history store: a commit of {count} messages failed, they are not stored: {e}");
        }
        let (lock, changed) = &*committed;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) += count;
        changed.notify_all();
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

fn commit(db: &Database, batch: &[(String, u64, Arc<str>)], history: usize, clean: bool) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut messages = txn.open_table(MESSAGES)?;
        let mut rooms = txn.open_table(ROOMS)?;
        for (room, seq, json) in batch {
            messages.insert((room.as_str(), *seq), &**json)?;
            let last = rooms.get(room.as_str())?.map_or(0, |v| v.value());
            if *seq > last {
                rooms.insert(room.as_str(), *seq)?;
            }
            // Keep the last `history`: drop what fell out of the window.
            if let Some(cutoff) = seq.checked_sub(history as u64) {
                messages.retain_in((room.as_str(), 0)..=(room.as_str(), cutoff), |_, _| false)?;
            }
        }
        if clean {
            txn.open_table(META)?.insert("clean", 1)?;
        }
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("chatd-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn history_and_numbering_survive_a_clean_restart() {
        let dir = dir("clean");
        let store = Store::open(&dir, 3).unwrap();
        assert_eq!(store.load("r", 3).unwrap().0, 0);
        for seq in 1..=5 {
            store.append("r", seq, Arc::from(format!("m{seq}")));
        }
        store.append("other", 1, Arc::from("x"));
        let (seq, history, recoverable_from) = store.load("r", 3).unwrap();
        assert_eq!((seq, recoverable_from), (5, 0));
        assert_eq!(history.iter().map(|(s, m)| (*s, &**m)).collect::<Vec<_>>(), [(3, "m3"), (4, "m4"), (5, "m5")]);
        store.close();
        drop(store);
        let store = Store::open(&dir, 3).unwrap();
        assert_eq!(store.load("r", 3).unwrap().0, 5, "a clean restart continues exactly");
        assert_eq!(store.load("other", 3).unwrap().1.len(), 1);
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn after_a_crash_numbering_jumps_instead_of_repeating() {
        let dir = dir("crash");
        let store = Store::open(&dir, 10).unwrap();
        store.append("r", 1, Arc::from("m1"));
        assert_eq!(store.load("r", 10).unwrap().0, 1);
        store.abandon(); // no clean mark: as after SIGKILL
        let store = Store::open(&dir, 10).unwrap();
        let (seq, history, recoverable_from) = store.load("r", 10).unwrap();
        assert_eq!((seq, history.len()), (1 + CRASH_GAP, 1));
        assert_eq!(recoverable_from, seq, "nothing before the crash is known complete");
        assert_eq!(store.load("new", 10).unwrap().0, CRASH_GAP, "a room with nothing stored jumps too");
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_damaged_file_is_reported_and_left_alone() {
        let dir = dir("damaged");
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = vec![0x5a; 8192];
        std::fs::write(dir.join("history.redb"), &garbage).unwrap();
        let e = Store::open(&dir, 10).unwrap_err().to_string();
        assert!(e.contains("history.redb can't be used") && e.contains("left it untouched"), "{e}");
        assert_eq!(std::fs::read(dir.join("history.redb")).unwrap(), garbage);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
