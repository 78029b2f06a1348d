//! The app API socket's access control is its file mode (DESIGN §11): it must be 0600 from the
//! first moment it can be reached at its path, not only once `bind_socket` returns.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use attestmesh_node::api;

/// Hole 9: binding then `chmod` leaves a window in which the socket exists with the umask's
/// mode (0755 under the usual 022: anyone may connect). A watcher spinning on the path while
/// the agent binds must never see any mode but 0600.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_socket_is_never_reachable_with_a_looser_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/agent.sock");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let watching = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (path, stop, watching) = (path.clone(), Arc::clone(&stop), Arc::clone(&watching));
        std::thread::spawn(move || {
            let mut loose = Vec::new();
            watching.store(true, Ordering::Relaxed);
            while !stop.load(Ordering::Relaxed) {
                if let Ok(m) = std::fs::symlink_metadata(&path)
                    && m.file_type().is_socket()
                {
                    let mode = m.permissions().mode() & 0o777;
                    if mode != 0o600 {
                        loose.push(mode);
                    }
                }
            }
            loose
        })
    };
    while !watching.load(Ordering::Relaxed) {
        std::thread::yield_now();
    }
    for _ in 0..1000 {
        let l = api::bind_socket(&path).unwrap();
        drop(l);
        std::fs::remove_file(&path).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let loose = watcher.join().unwrap();
    assert!(
        loose.is_empty(),
        "the socket was reachable {} time(s) with a looser mode, e.g. {:o}",
        loose.len(),
        loose.first().copied().unwrap_or_default()
    );
}

#[tokio::test]
async fn socket_is_0600_right_after_bind_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let l = api::bind_socket(&path).unwrap();
    let m = std::fs::symlink_metadata(&path).unwrap();
    assert!(m.file_type().is_socket());
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    // Only the socket is in the directory: no private bind directory is left over.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("agent.sock")]);
    // It accepts connections at its public path.
    let (conn, accepted) = tokio::join!(tokio::net::UnixStream::connect(&path), l.accept());
    conn.unwrap();
    accepted.unwrap();
}
