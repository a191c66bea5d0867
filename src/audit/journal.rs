//! The access history's journal (`[store] history_sync = "journal"`, one node on SQLite).
//!
//! A login's record is appended to a file beside the store with one `pwrite` on the
//! session's own thread, and the login is answered; the history writer takes what was
//! appended (it rides the writer's channel too) into the store every [`LINGER`], in one
//! transaction that also writes how far the journal is applied ([`JournalMark`]). At
//! start, whatever the journal holds past that mark is written first — so a `kill -9`
//! loses nothing acknowledged, as with `normal`, without a commit and two thread
//! hand-offs per login. A power cut may lose what the kernel had not yet written.
//!
//! The journal is a directory (`<store file>-history/`) of files `<generation>.journal`,
//! one JSON line per record; a new generation is started when the applied part of the
//! current one passes [`ROTATE`] bytes, and a generation is removed once the store's mark
//! is past it. A `lock` file held by the running process keeps a second one out.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::policy::login::Reason;
use crate::store::{AccessRecord, AppPasswordUse, JournalMark};

/// How long the writer lets records gather before taking them into the store.
pub const LINGER: Duration = Duration::from_millis(100);
/// Applied bytes after which a new generation is started.
pub const ROTATE: u64 = 8 << 20;
/// Bytes a generation holds at most: past it (the store has taken nothing for that long)
/// records are refused here and wait for the store's commit instead, whose queue is
/// bounded — what failed logins can make the disk hold is bounded too.
pub const LIMIT: u64 = 256 << 20;

/// The journal line format this build writes and reads.
const VERSION: u32 = 1;

/// One record as a journal line (every field the store writes, the mailbox's id and the
/// unresolved name included; never a secret — records carrying one go the other way).
#[derive(Serialize, Deserialize)]
struct Line<'a> {
    /// The line format's version ([`VERSION`]).
    v: u32,
    at: Timestamp,
    #[serde(borrow)]
    listener: Cow<'a, str>,
    #[serde(borrow)]
    protocol: Cow<'a, str>,
    #[serde(borrow)]
    client: Cow<'a, str>,
    #[serde(borrow)]
    login: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    address: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    unresolved: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mailbox_id: Option<i64>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    software: Option<Cow<'a, str>>,
    #[serde(borrow)]
    credential: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    app_password: Option<(i64, Cow<'a, str>)>,
    #[serde(borrow)]
    result: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<Cow<'a, Reason>>,
}

/// `rec` as one journal line, ending in a newline.
pub fn encode(rec: &AccessRecord) -> Vec<u8> {
    fn b(s: &str) -> Cow<'_, str> {
        Cow::Borrowed(s)
    }
    let line = Line {
        v: VERSION,
        at: rec.at,
        listener: b(&rec.listener),
        protocol: b(rec.protocol.as_str()),
        client: b(&rec.client),
        login: b(&rec.login),
        address: rec.address.as_deref().map(b),
        unresolved: rec.unresolved.as_deref().map(b),
        mailbox_id: rec.mailbox_id,
        software: rec.software.as_deref().map(b),
        credential: b(rec.credential.as_str()),
        app_password: rec.app_password.as_ref().map(|a| (a.id, b(&a.name))),
        result: b(rec.result.as_str()),
        reason: rec.reason.as_ref().map(Cow::Borrowed),
    };
    let mut out = Vec::with_capacity(256);
    serde_json::to_writer(&mut out, &line).expect("a record is always JSON");
    out.push(b'\n');
    out
}

/// The record of one journal line (without its newline); none if it is not one.
pub fn decode(line: &[u8]) -> Option<AccessRecord> {
    let l: Line = serde_json::from_slice(line).ok()?;
    if l.v != VERSION {
        return None;
    }
    let own = |c: Cow<'_, str>| c.into_owned();
    Some(AccessRecord {
        at: l.at,
        listener: own(l.listener),
        protocol: l.protocol.parse().ok()?,
        client: own(l.client),
        login: own(l.login),
        address: l.address.map(own),
        unresolved: l.unresolved.map(own),
        mailbox_id: l.mailbox_id,
        software: l.software.map(own),
        credential: l.credential.parse().ok()?,
        app_password: l.app_password.map(|(id, name)| AppPasswordUse {
            id,
            name: own(name),
        }),
        result: l.result.parse().ok()?,
        reason: l.reason.map(Cow::into_owned),
    })
}

/// The file being appended to.
struct Current {
    generation: u64,
    file: File,
    offset: u64,
}

/// The journal of a running proxy.
pub struct Journal {
    dir: PathBuf,
    current: Mutex<Current>,
    /// Set while appends fail (logged once per run of failures).
    failing: AtomicBool,
    /// The oldest generation that may still be on disk.
    oldest: AtomicU64,
    /// [`LIMIT`] (smaller in tests).
    limit: u64,
    /// Held (locked) for the process's life.
    _lock: File,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("dir", &self.dir).finish()
    }
}

/// The journal directory of the SQLite store at `store`.
pub fn dir_of(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push("-history");
    PathBuf::from(name)
}

fn file_of(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{generation:016}.journal"))
}

/// The generations in `dir`, oldest first.
fn generations(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out: Vec<u64> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            name.to_str()?.strip_suffix(".journal")?.parse().ok()
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

fn create(dir: &Path, generation: u64) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file_of(dir, generation))
}

/// What a replay found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Records handed on.
    pub records: usize,
    /// Writes that never finished (a tail without its newline, a block of zeros a power
    /// cut left), skipped.
    pub skipped: usize,
    /// The mark after the last of them (none: nothing past the store's).
    pub mark: Option<JournalMark>,
}

/// A journal locked by this process, not yet appended to: read the store's mark now (a
/// process that held it before has committed all it will).
#[derive(Debug)]
pub struct Locked {
    dir: PathBuf,
    lock: File,
    there: Vec<u64>,
}

impl Locked {
    /// Whether any generation holds anything.
    pub fn holds_records(&self) -> io::Result<bool> {
        for &g in &self.there {
            if std::fs::metadata(file_of(&self.dir, g))?.len() > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Starts a new generation, after the ones there and after the store's `mark`.
    pub fn start(self, mark: Option<JournalMark>) -> io::Result<Journal> {
        let generation = self
            .there
            .last()
            .copied()
            .max(mark.map(|m| m.generation))
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| io::Error::other("journal generations exhausted"))?;
        let oldest = self.there.first().copied().unwrap_or(generation);
        let file = create(&self.dir, generation)?;
        Ok(Journal {
            dir: self.dir,
            current: Mutex::new(Current {
                generation,
                file,
                offset: 0,
            }),
            failing: AtomicBool::new(false),
            oldest: AtomicU64::new(oldest),
            limit: LIMIT,
            _lock: self.lock,
        })
    }
}

impl Journal {
    /// Locks (creating) the journal at `dir`; fails if another process holds it.
    pub fn lock(dir: &Path) -> io::Result<Locked> {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join("lock"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "{} is in use by another process (one serve per store)",
                        dir.display()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        let there = generations(dir)?;
        Ok(Locked {
            dir: dir.to_owned(),
            lock,
            there,
        })
    }

    /// Locks the journal at `dir` and starts appending after the store's `mark`.
    #[cfg(test)]
    pub fn open(dir: &Path, mark: Option<JournalMark>) -> io::Result<Journal> {
        Journal::lock(dir)?.start(mark)
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `line` (one [`encode`]d record) and, still holding the journal (so the
    /// writer receives records in the journal's order), hands its end mark to `then`.
    /// On failure nothing is appended and `then` is not called.
    pub fn append(&self, line: &[u8], then: impl FnOnce(JournalMark)) -> io::Result<()> {
        let mut cur = self.current();
        let written = if cur.offset + line.len() as u64 > self.limit {
            Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "the journal holds {} bytes the store has not taken",
                    self.limit
                ),
            ))
        } else {
            cur.file.write_all_at(line, cur.offset).inspect_err(|_| {
                // A short write leaves no half line for the next one to follow.
                let _ = cur.file.set_len(cur.offset);
            })
        };
        if let Err(e) = written {
            if !self.failing.swap(true, Ordering::Relaxed) {
                tracing::error!(error = %e, dir = %self.dir.display(), "cannot append to the history journal; logins wait for the store's commit instead");
            }
            return Err(e);
        }
        cur.offset += line.len() as u64;
        then(JournalMark {
            generation: cur.generation,
            offset: cur.offset,
        });
        drop(cur);
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("the history journal takes records again");
        }
        Ok(())
    }

    /// Hands what the generations before the current one hold past `mark` (none:
    /// everything) to `apply`, oldest first, `chunk` records at a time (each with the mark
    /// after it) with the mark after the chunk; stops at `apply`'s first error. A complete line that is not a
    /// record this version reads is an error (nothing is skipped silently); a write that
    /// never finished is skipped and counted.
    pub fn replay(
        &self,
        mark: Option<JournalMark>,
        chunk: usize,
        mut apply: impl FnMut(Vec<(AccessRecord, JournalMark)>, JournalMark) -> Result<(), String>,
    ) -> Result<Replayed, String> {
        use std::io::{BufRead, Seek};
        let current = self.current().generation;
        let from = mark.unwrap_or_default();
        let mut out = Replayed::default();
        let gens = generations(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        for generation in gens {
            if generation >= current || generation < from.generation {
                continue;
            }
            let path = file_of(&self.dir, generation);
            let failed = |e: io::Error| format!("{}: {e}", path.display());
            let mut file = std::io::BufReader::new(File::open(&path).map_err(failed)?);
            let mut offset = if generation == from.generation {
                from.offset
            } else {
                0
            };
            file.seek(io::SeekFrom::Start(offset)).map_err(failed)?;
            let mut records = Vec::new();
            let mut moved = false;
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = file.read_until(b'\n', &mut line).map_err(failed)?;
                if n == 0 {
                    break;
                }
                if line.last() != Some(&b'\n') {
                    // The tail of a write that never finished.
                    out.skipped += 1;
                    break;
                }
                let at = offset;
                offset += n as u64;
                moved = true;
                // A power cut can leave zeros where a write's data never reached the disk.
                let body = &line[line.iter().take_while(|&&b| b == 0).count()..line.len() - 1];
                if body.is_empty() {
                    out.skipped += usize::from(n > 1);
                    continue;
                }
                match decode(body) {
                    Some(r) => records.push((r, JournalMark { generation, offset })),
                    None => {
                        return Err(format!(
                            "{}: the line at byte {at} is not an access record this version reads; \
                             move the file away to start without it",
                            path.display()
                        ));
                    }
                }
                if records.len() >= chunk {
                    let mark = JournalMark { generation, offset };
                    out.records += records.len();
                    apply(std::mem::take(&mut records), mark)?;
                    out.mark = Some(mark);
                    moved = false;
                }
            }
            if moved {
                let mark = JournalMark { generation, offset };
                out.records += records.len();
                apply(records, mark)?;
                out.mark = Some(mark);
            }
        }
        Ok(out)
    }

    /// Removes the journal (everything in it is in the store).
    pub fn remove(self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(error = %e, dir = %self.dir.display(), "cannot remove the history journal");
        } else {
            tracing::info!(dir = %self.dir.display(), "history journal written and removed (history_sync is no longer \"journal\")");
        }
    }

    /// After the store took everything up to `mark`: removes the generations before it,
    /// and starts a new one when the current one is applied past [`ROTATE`].
    pub fn applied(&self, mark: JournalMark) {
        if mark.generation > self.oldest.load(Ordering::Relaxed)
            && let Ok(gens) = generations(&self.dir)
        {
            for g in gens.into_iter().filter(|&g| g < mark.generation) {
                if let Err(e) = std::fs::remove_file(file_of(&self.dir, g)) {
                    tracing::warn!(error = %e, generation = g, "cannot remove an applied history journal file");
                }
            }
            self.oldest.store(mark.generation, Ordering::Relaxed);
        }
        let mut cur = self.current();
        if mark.generation == cur.generation && mark.offset >= ROTATE {
            match create(&self.dir, cur.generation + 1) {
                Ok(file) => {
                    *cur = Current {
                        generation: cur.generation + 1,
                        file,
                        offset: 0,
                    };
                }
                Err(e) => tracing::warn!(error = %e, "cannot start a new history journal file"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::history::tests::record;
    use crate::policy::ProtocolSet;
    use crate::policy::login::{AccessResult, CredentialKind};

    /// Every field the store writes comes back from a line, odd characters included, and
    /// the line is one line.
    #[test]
    fn a_record_comes_back_whole_from_its_line() {
        let rec = AccessRecord {
            address: Some("m@x.it".into()),
            unresolved: Some("user\"1\n@x.it".into()),
            mailbox_id: Some(42),
            software: Some("Thunderbird 128 — “Supernova”".into()),
            credential: CredentialKind::App,
            app_password: Some(AppPasswordUse {
                id: 7,
                name: "telefono\tdi Anna".into(),
            }),
            result: AccessResult::Refused,
            reason: Some(Reason::OutOfScope {
                name: "telefono".into(),
                scope: ProtocolSet::from_bits(4),
            }),
            ..record("m@x.it")
        };
        let line = encode(&rec);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(decode(&line[..line.len() - 1]).as_ref(), Some(&rec));
        assert_eq!(decode(&line[..line.len() / 2]), None, "a torn line");
        let plain = record("a@b.it");
        assert_eq!(decode(encode(&plain).trim_ascii_end()), Some(plain));
    }

    fn append(j: &Journal, rec: &AccessRecord) -> JournalMark {
        let mut got = None;
        j.append(&encode(rec), |m| got = Some(m)).unwrap();
        got.unwrap()
    }

    /// A restart replays what is past the store's mark, in order, and not a torn last
    /// write; the new generation comes after both the files and the mark.
    #[test]
    fn replay_takes_what_is_past_the_mark_and_skips_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("s.db-history");
        let j = Journal::open(&d, None).unwrap();
        let first = append(&j, &record("one"));
        let second = append(&j, &record("two"));
        append(&j, &record("three"));
        assert_eq!(first.generation, 1);
        assert!(first < second);
        drop(j);
        // A power cut in the middle of a fourth write.
        let torn = &encode(&record("four"))[..20];
        let mut file = OpenOptions::new()
            .append(true)
            .open(file_of(&d, 1))
            .unwrap();
        std::io::Write::write_all(&mut file, torn).unwrap();

        let j = Journal::open(&d, Some(first)).unwrap();
        let (logins, r) = replayed(&j, Some(first));
        assert_eq!(logins, ["two", "three"]);
        assert_eq!(r.skipped, 1);
        let end = r.mark.unwrap();
        assert_eq!(end.generation, 1);
        // The torn bytes are not part of what was applied.
        let len = std::fs::metadata(file_of(&d, 1)).unwrap().len();
        assert_eq!(end.offset, len - torn.len() as u64);
        // Everything, from no mark.
        assert_eq!(replayed(&j, None).1.records, 3);
        // Appends go to a new generation, which a replay does not read.
        assert_eq!(append(&j, &record("five")).generation, 2);
        assert_eq!(replayed(&j, Some(end)).1.records, 0);
        drop(j);
        // A store mark ahead of the files (the folder was emptied): still after it.
        std::fs::remove_dir_all(&d).unwrap();
        let j = Journal::open(
            &d,
            Some(JournalMark {
                generation: 9,
                offset: 5,
            }),
        )
        .unwrap();
        assert_eq!(append(&j, &record("six")).generation, 10);
    }

    /// What a replay from `mark` hands on (two records at a time: each chunk's mark is
    /// the end of its last line).
    fn replayed(j: &Journal, mark: Option<JournalMark>) -> (Vec<String>, Replayed) {
        let mut logins = Vec::new();
        let r = j
            .replay(mark, 2, |chunk, end| {
                assert!(chunk.len() <= 2);
                assert_eq!(chunk.last().map(|(_, m)| *m), Some(end));
                logins.extend(chunk.into_iter().map(|(r, _)| r.login));
                Ok(())
            })
            .unwrap();
        (logins, r)
    }

    /// A complete line this version cannot read stops the replay with the file and byte
    /// named (nothing skipped silently); zeros a power cut left are skipped.
    #[test]
    fn an_unreadable_line_stops_the_replay_and_zeros_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("s.db-history");
        let j = Journal::open(&d, None).unwrap();
        append(&j, &record("one"));
        j.append(&[0u8; 64], |_| {}).unwrap();
        j.append(b"\n", |_| {}).unwrap();
        append(&j, &record("two"));
        drop(j);
        let j = Journal::open(&d, None).unwrap();
        let (logins, r) = replayed(&j, None);
        assert_eq!(logins, ["one", "two"]);
        assert_eq!(r.skipped, 1, "the zeros; an empty line is nothing");
        drop(j);

        let j = Journal::open(&d, None).unwrap();
        let newer = encode(&record("three"));
        let newer = String::from_utf8(newer)
            .unwrap()
            .replace("\"v\":1", "\"v\":2");
        j.append(newer.as_bytes(), |_| {}).unwrap();
        append(&j, &record("four"));
        drop(j);
        let j = Journal::open(&d, None).unwrap();
        let e = j.replay(None, 10, |_, _| Ok(())).unwrap_err();
        assert!(
            e.contains("is not an access record this version reads"),
            "{e}"
        );
        assert!(
            e.contains("0000000000000003.journal: the line at byte 0"),
            "{e}"
        );
        // The store's refusal stops it too, with its words.
        let e = j.replay(None, 10, |_, _| Err("locked".into())).unwrap_err();
        assert_eq!(e, "locked");
    }

    /// One process per journal: a second `serve` on the same store is refused.
    #[test]
    fn a_second_process_is_kept_out() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("s.db-history");
        let _j = Journal::open(&d, None).unwrap();
        let e = Journal::open(&d, None).unwrap_err();
        assert!(e.to_string().contains("in use by another process"), "{e}");
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&d).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o700);
    }

    /// A generation the store does not take stops at LIMIT: the append fails (the caller
    /// waits for the store instead) and leaves no half line.
    #[test]
    fn a_journal_the_store_does_not_take_stops_growing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("s.db-history");
        let j = Journal {
            limit: 4 << 20,
            ..Journal::open(&d, None).unwrap()
        };
        let chunk = vec![b'x'; 1 << 20];
        let mut called = 0;
        let mut failed = 0;
        for _ in 0..4 + 3 {
            match j.append(&chunk, |_| called += 1) {
                Ok(()) => {}
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::StorageFull);
                    failed += 1;
                }
            }
        }
        assert_eq!(called, 4);
        assert_eq!(failed, 3);
        assert_eq!(std::fs::metadata(file_of(&d, 1)).unwrap().len(), 4 << 20);
    }

    /// Applied generations are removed; past ROTATE applied bytes a new one starts.
    #[test]
    fn applied_generations_go_and_a_full_one_is_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("s.db-history");
        let j = Journal::open(&d, None).unwrap();
        let chunk = vec![b'x'; 1 << 20];
        let mut mark = JournalMark::default();
        while mark.offset < ROTATE {
            j.append(&chunk, |m| mark = m).unwrap();
        }
        j.applied(JournalMark { offset: 10, ..mark });
        assert_eq!(
            append(&j, &record("a")).generation,
            1,
            "not applied past ROTATE"
        );
        j.applied(mark);
        let next = append(&j, &record("b"));
        assert_eq!(next.generation, 2);
        assert_eq!(generations(&d).unwrap(), [1, 2]);
        j.applied(next);
        assert_eq!(generations(&d).unwrap(), [2]);
    }
}
