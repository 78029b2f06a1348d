//! Durable, atomic file replacement: temp file in the same directory, fsync, rename, fsync the
//! directory. A reader never sees a torn file and a crash leaves either the old or the new
//! content — what the agent's state directory, the Indexer's progress, the devnet's state and
//! the operator's deployment records all need (DESIGN §11).
//!
//! The temp file is never one somebody else prepared: it gets a fresh random name and is
//! opened `O_CREAT | O_EXCL | O_NOFOLLOW`, so a symlink or file planted at that name makes the
//! open fail (and a new name is tried) instead of redirecting the data or inheriting the
//! planted file's mode and open handles. It is created owner-only (0600) and given its final
//! mode with `fchmod` before the rename, so there is no moment in which the data sits in a file
//! more readable than asked for.

use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Fresh temp names tried before giving up: each collision means somebody is placing files at
/// random names in the directory, which a few attempts will not outrun anyway.
const TEMP_ATTEMPTS: usize = 16;

/// Replaces `path` with `data`, which ends up with permission bits `mode` exactly (e.g.
/// `0o600` for files that must not be world-readable; the umask does not apply). The temp file
/// is removed if anything fails.
pub fn write(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let (dir, name) = split(path)?;
    let names = (0..TEMP_ATTEMPTS).map(|_| dir.join(format!(".{name}.tmp-{:016x}", random_u64())));
    write_via(path, data, mode, names)
}

fn split(path: &Path) -> io::Result<(&Path, String)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    Ok((dir, name.to_string_lossy().into_owned()))
}

/// 64 unpredictable bits without a crate: `RandomState` keys SipHash from the OS's randomness;
/// a counter and the clock make every call differ. Unpredictability is only defence in depth —
/// `O_EXCL | O_NOFOLLOW` is what makes a guessed name harmless.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Creates the first of `names` that does not exist yet (never following a link), owner-only.
fn create_temp(names: impl IntoIterator<Item = PathBuf>) -> io::Result<(File, PathBuf)> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no temp file name to try");
    for tmp in names {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => return Ok((f, tmp)),
            // Something is already there (a file, or a link O_EXCL refuses to follow): leave
            // it alone and take another name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// [`write`] with the candidate temp names given (tests force a planted name first).
fn write_via(
    path: &Path,
    data: &[u8],
    mode: u32,
    names: impl IntoIterator<Item = PathBuf>,
) -> io::Result<()> {
    let (dir, _) = split(path)?;
    let (mut f, tmp) = create_temp(names)?;
    let result = (|| {
        f.write_all(data)?;
        // fchmod on our own descriptor: the mode is final before the name is.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_with_the_mode_and_leaves_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        write(&p, b"one", 0o600).unwrap();
        write(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_cleans_up() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write(&p, b"old", 0o644).unwrap();
        // Renaming a file over a non-empty directory fails after the temp file was written.
        let blocker = d.path().join("dir");
        fs::create_dir(&blocker).unwrap();
        fs::write(blocker.join("x"), b"x").unwrap();
        assert!(write(&blocker, b"new", 0o644).is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old");
        let tmp_left = fs::read_dir(d.path())
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().contains(".tmp-"));
        assert!(!tmp_left, "temp file removed");
    }

    /// A temp name an attacker predicted; [`planted_first`] makes the writer try it first.
    fn predictable_temp(path: &Path) -> PathBuf {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
    }

    /// The planted name first, then a fresh one: the writer must skip the planted one.
    fn planted_first(path: &Path) -> Vec<PathBuf> {
        vec![
            predictable_temp(path),
            path.with_file_name(format!(".fresh.tmp-{:x}", random_u64())),
        ]
    }

    /// Hole 9: a symlink planted at the temp path must not redirect the write to its target.
    #[test]
    fn attack_symlink_at_the_temp_path_does_not_redirect_the_write() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, b"untouched").unwrap();
        let p = d.path().join("state.json");
        std::os::unix::fs::symlink(&victim, predictable_temp(&p)).unwrap();
        write_via(&p, b"new", 0o600, planted_first(&p)).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"untouched");
        let meta = fs::symlink_metadata(&p).unwrap();
        assert!(
            meta.file_type().is_file(),
            "the target is a regular file, not a link"
        );
        assert_eq!(fs::read(&p).unwrap(), b"new");
    }

    /// Hole 9: a pre-existing, world-readable file at the temp name must not become the target
    /// (it would keep its mode, and whoever placed it may still hold it open).
    #[test]
    fn attack_pre_existing_temp_file_is_not_reused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("csk.cache");
        let planted = predictable_temp(&p);
        fs::write(&planted, b"planted").unwrap();
        fs::set_permissions(&planted, fs::Permissions::from_mode(0o666)).unwrap();
        let spy = fs::File::open(&planted).unwrap();
        write_via(&p, b"secret", 0o600, planted_first(&p)).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let mut seen = Vec::new();
        std::io::Read::read_to_end(&mut &spy, &mut seen).unwrap();
        assert_eq!(seen, b"planted", "the planted file never received the data");
        // The plain entry point uses random names, and refuses when every name is taken.
        write(&p, b"again", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"again");
        let e = write_via(&p, b"x", 0o600, [planted.clone(), planted]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"again", "nothing lost");
    }

    /// The final mode is the one asked for, whatever the process umask lets `open` create.
    #[test]
    fn final_file_has_the_requested_mode() {
        let d = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o640, 0o644, 0o664, 0o400] {
            let p = d.path().join(format!("f{mode:o}"));
            write(&p, b"x", mode).unwrap();
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                mode,
                "{mode:o}"
            );
        }
    }
}
