//! The optional state directory (DESIGN §11): mode 0700, files 0600, every write atomic.
//!
//! Atomic = write a temp file in the same directory, fsync it, rename over the target, fsync the
//! directory. A crash at any point leaves either the old or the new content, never a torn file,
//! which matters because the agent restarts at arbitrary moments (kill -9 in the lab tests) and
//! must come back with a usable cursor and CSK cache. Secrets never go here in plaintext: callers
//! store only public data or data already sealed under the `state` key ([`crate::cache`]).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// State directory failures; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("state directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("state directory {0} exists but is not a directory")]
    NotADirectory(PathBuf),
    #[error("invalid state file name {0:?}: plain names only")]
    BadName(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateDirError + '_ {
    move |source| StateDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An open state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Creates the directory (and parents) with mode 0700, or tightens an existing one to 0700:
    /// the CSK cache is encrypted, but the cursor and file names are still nobody else's business.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StateDirError> {
        let root = root.into();
        match fs::metadata(&root) {
            Ok(m) if !m.is_dir() => return Err(StateDirError::NotADirectory(root)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&root)
                    .map_err(io_err(&root))?;
            }
            Err(e) => return Err(io_err(&root)(e)),
        }
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).map_err(io_err(&root))?;
        Ok(Self { root })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    fn file(&self, name: &str) -> Result<PathBuf, StateDirError> {
        let plain = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains('/')
            && !name.starts_with(".tmp-");
        if plain {
            Ok(self.root.join(name))
        } else {
            Err(StateDirError::BadName(name.to_string()))
        }
    }

    /// Reads a file; `None` if it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StateDirError> {
        let path = self.file(name)?;
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Replaces `name` atomically with `data` (mode 0600).
    pub fn write(&self, name: &str, data: &[u8]) -> Result<(), StateDirError> {
        let path = self.file(name)?;
        attestmesh_atomicfile::write(&path, data, 0o600).map_err(io_err(&path))
    }

    /// Removes a file; a missing file is fine.
    pub fn remove(&self, name: &str) -> Result<(), StateDirError> {
        let path = self.file(name)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_0700_and_writes_0600_atomically() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("a/b/state");
        let d = StateDir::open(&root).unwrap();
        assert_eq!(mode(&root), 0o700);
        assert_eq!(d.read("cursor").unwrap(), None);
        d.write("cursor", b"one").unwrap();
        assert_eq!(mode(&root.join("cursor")), 0o600);
        d.write("cursor", b"two").unwrap();
        assert_eq!(d.read("cursor").unwrap().unwrap(), b"two");
        // No temp files are left behind.
        let names: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["cursor".to_string()]);
        d.remove("cursor").unwrap();
        d.remove("cursor").unwrap();
        assert_eq!(d.read("cursor").unwrap(), None);
    }

    #[test]
    fn tightens_an_existing_directory() {
        let t = tempfile::tempdir().unwrap();
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
        StateDir::open(t.path()).unwrap();
        assert_eq!(mode(t.path()), 0o700);
    }

    #[test]
    fn refuses_files_and_bad_names() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        fs::write(&f, b"x").unwrap();
        assert!(matches!(
            StateDir::open(&f),
            Err(StateDirError::NotADirectory(_))
        ));
        let d = StateDir::open(t.path().join("s")).unwrap();
        for n in ["", "..", "a/b", ".tmp-x"] {
            assert!(
                matches!(d.write(n, b""), Err(StateDirError::BadName(_))),
                "{n}"
            );
        }
    }
}
