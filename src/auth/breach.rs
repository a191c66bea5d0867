//! The lists of stolen passwords a main password is checked against
//! (`[auth] breached_passwords_file`), in the Pwned Passwords format: SHA-1 hashes in
//! upper-case hex, one a line with its count (`HASH:COUNT`), either
//!
//! - one file sorted by hash (searched by bisection, a few dozen reads in a file of any
//!   size), or
//! - a folder in the k-anonymity layout: one file a 5-character prefix (`ABCDE` or
//!   `ABCDE.txt`), each line the remaining 35 characters and the count.
//!
//! Called on a hashing worker, never on the reactor; the password is hashed here and
//! neither it nor its hash is logged or kept.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::secret::Secret;

/// A line of a sorted file is read this far at most (a hash, a colon, a count).
const LINE_MAX: usize = 128;

/// Where the lists are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BreachList {
    /// One sorted file.
    Sorted(PathBuf),
    /// A folder of prefix files.
    Prefixes(PathBuf),
}

impl BreachList {
    /// The list at `path` (a file or a folder); an error names what is wrong.
    pub fn open(path: &Path) -> Result<BreachList, String> {
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("breached_passwords_file {}: {e}", path.display()))?;
        Ok(if meta.is_dir() {
            BreachList::Prefixes(path.to_owned())
        } else {
            BreachList::Sorted(path.to_owned())
        })
    }

    /// Whether `password` is in the list. An unreadable list answers `Err` (logged by
    /// the caller; the login goes on as if it were not there).
    pub fn contains(&self, password: &Secret) -> std::io::Result<bool> {
        let digest = ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            password.expose().as_bytes(),
        );
        let hex = zeroize::Zeroizing::new(
            digest
                .as_ref()
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<String>(),
        );
        match self {
            BreachList::Sorted(path) => in_sorted(path, hex.as_bytes()),
            BreachList::Prefixes(dir) => in_prefix_file(dir, &hex),
        }
    }
}

/// Whether the line starting at or after `pos` (the first whole line) holds `hash`:
/// `Some((line start, line end, ordering of its hash against `hash`))`, `None` past the
/// end.
fn line_at(
    f: &mut File,
    len: u64,
    pos: u64,
    hash: &[u8],
) -> std::io::Result<Option<(u64, u64, std::cmp::Ordering)>> {
    // Back one byte: if it is a newline, `pos` starts a line.
    let mut start = pos.saturating_sub(1);
    let mut buf = [0u8; LINE_MAX];
    if pos > 0 {
        // Find the end of the line `pos - 1` is in.
        loop {
            if start >= len {
                return Ok(None);
            }
            f.seek(SeekFrom::Start(start))?;
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(None);
            }
            match buf[..n].iter().position(|&b| b == b'\n') {
                Some(i) => {
                    start += i as u64 + 1;
                    break;
                }
                None => start += n as u64,
            }
        }
    }
    if start >= len {
        return Ok(None);
    }
    f.seek(SeekFrom::Start(start))?;
    let n = f.read(&mut buf)?;
    let line = &buf[..n];
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(n);
    let key: Vec<u8> = line[..end]
        .iter()
        .take_while(|&&b| b != b':' && b != b'\r')
        .map(u8::to_ascii_uppercase)
        .collect();
    Ok(Some((
        start,
        start + end as u64 + 1,
        key.as_slice().cmp(hash),
    )))
}

/// Bisection over a file sorted by hash.
fn in_sorted(path: &Path, hash: &[u8]) -> std::io::Result<bool> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let (mut lo, mut hi) = (0u64, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match line_at(&mut f, len, mid, hash)? {
            None => hi = mid,
            Some((_, _, std::cmp::Ordering::Equal)) => return Ok(true),
            Some((_, end, std::cmp::Ordering::Less)) => lo = end,
            Some((_, _, std::cmp::Ordering::Greater)) => hi = mid,
        }
    }
    Ok(false)
}

/// The prefix file of `hex`, read whole (a few dozen kilobytes).
fn in_prefix_file(dir: &Path, hex: &str) -> std::io::Result<bool> {
    let (prefix, rest) = hex.split_at(5);
    let file = [dir.join(prefix), dir.join(format!("{prefix}.txt"))]
        .into_iter()
        .find(|p| p.is_file());
    let Some(file) = file else {
        return Ok(false);
    };
    let text = std::fs::read_to_string(file)?;
    Ok(text.lines().any(|l| {
        l.split(':')
            .next()
            .is_some_and(|s| s.trim().eq_ignore_ascii_case(rest))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha1(p: &str) -> String {
        ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, p.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect()
    }

    #[test]
    fn a_sorted_file_is_searched_by_bisection() {
        let dir = tempfile::tempdir().unwrap();
        let mut hashes: Vec<String> = (0..500).map(|i| sha1(&format!("pw{i}"))).collect();
        hashes.sort();
        let text: String = hashes
            .iter()
            .enumerate()
            .map(|(i, h)| format!("{h}:{}\r\n", i * 37 + 1))
            .collect();
        let path = dir.path().join("pwned.txt");
        std::fs::write(&path, text).unwrap();
        let list = BreachList::open(&path).unwrap();
        for i in [0, 1, 250, 498, 499] {
            assert!(
                list.contains(&Secret::new(format!("pw{i}"))).unwrap(),
                "pw{i}"
            );
        }
        for p in ["pw500", "", "correct horse battery staple"] {
            assert!(!list.contains(&Secret::new(p.into())).unwrap(), "{p}");
        }
        // The first and last lines, and lower-case hex, are found too.
        std::fs::write(&path, format!("{}:1\n", sha1("only").to_lowercase())).unwrap();
        assert!(list.contains(&Secret::new("only".into())).unwrap());
        std::fs::write(&path, "").unwrap();
        assert!(!list.contains(&Secret::new("only".into())).unwrap());
    }

    #[test]
    fn a_prefix_folder_is_read_one_file_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let h = sha1("Password1");
        std::fs::write(
            dir.path().join(format!("{}.txt", &h[..5])),
            format!(
                "0000000000000000000000000000000000A:3\r\n{}:24000\r\n",
                &h[5..]
            ),
        )
        .unwrap();
        let list = BreachList::open(dir.path()).unwrap();
        assert!(matches!(list, BreachList::Prefixes(_)));
        assert!(list.contains(&Secret::new("Password1".into())).unwrap());
        assert!(!list.contains(&Secret::new("Password2".into())).unwrap());
        assert!(BreachList::open(&dir.path().join("missing")).is_err());
    }
}
