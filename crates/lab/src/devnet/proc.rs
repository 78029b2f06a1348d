//! Detached processes: the devnet outlives the `devnet up` that started it, so every service is
//! the leader of its own process group (a `kill` of the group also reaches helpers it forked,
//! like alto's workers), logs to a file in the devnet directory, and is found again by the pid
//! recorded in the state file.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::DevnetError;
use super::state::ProcRecord;

/// Starts `argv` inside network namespace `ns` (via `ip netns exec`, which execs in place, so
/// the recorded pid is the program's own) as a new process-group leader, stdout and stderr
/// appended to `log`. A reaper thread waits for the child so that, while the starting process
/// lives (tests), a killed service does not linger as a zombie that still looks alive.
pub fn spawn_in_ns(
    name: &str,
    ns: &str,
    argv: &[String],
    env: &[(String, String)],
    log: &Path,
) -> Result<ProcRecord, DevnetError> {
    let Some((bin, args)) = argv.split_first() else {
        return Err(DevnetError::Setup(format!("{name}: empty command line")));
    };
    let out = OpenOptions::new().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(bin)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| DevnetError::Spawn {
        what: name.to_owned(),
        detail: e.to_string(),
    })?;
    let pid = child.id();
    std::thread::Builder::new()
        .name(format!("reap-{pid}"))
        .spawn(move || {
            let _ = child.wait();
        })?;
    Ok(ProcRecord {
        name: name.to_owned(),
        ns: ns.to_owned(),
        pid,
        argv: argv.to_vec(),
        env: env.to_vec(),
        log: log.to_path_buf(),
    })
}

fn pid_of(pid: u32) -> Option<Pid> {
    i32::try_from(pid)
        .ok()
        .filter(|p| *p > 1)
        .map(Pid::from_raw)
}

/// True while `pid` runs. A zombie (exited, not yet reaped) counts as gone — `kill -0` alone
/// would report it alive — but only once all its threads are gone too: a multi-threaded
/// process's leader shows `Z` while other threads still tear down (and still hold sockets and
/// the TUN device), and a restart before then finds its ports in use.
pub fn alive(pid: u32) -> bool {
    let Some(p) = pid_of(pid) else {
        return false;
    };
    if kill(p, None).is_err() {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Field 3 follows the parenthesised command name, which may itself contain spaces.
    let zombie = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_none_or(|state| state == "Z" || state == "X");
    if !zombie {
        return true;
    }
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count() > 1)
        .unwrap_or(false)
}

/// True while any member of process group `pgid` exists (zombies excluded).
fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut f = rest.split_whitespace();
        let state = f.next();
        let _ppid = f.next();
        let pgrp = f.next().and_then(|s| s.parse::<u32>().ok());
        pgrp == Some(pgid) && state.is_some_and(|s| s != "Z" && s != "X")
    })
}

/// SIGTERM to the whole group (a graceful stop lets the agent remove its interface and
/// socket), then SIGKILL to whatever remains after `grace`. Safe on a pid that is already gone.
pub fn stop_group(pgid: u32, grace: Duration) {
    let Some(p) = pid_of(pgid) else {
        return;
    };
    if matches!(killpg(p, Signal::SIGTERM), Err(Errno::ESRCH)) {
        return;
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !group_alive(pgid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = killpg(p, Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(2);
    while group_alive(pgid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `kill -9` of one process (the crash the lab tests inject), then waits until it is gone.
pub fn kill9(pid: u32) {
    if let Some(p) = pid_of(pid) {
        let _ = killpg(p, Signal::SIGKILL);
        let _ = kill(p, Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `n` lines of a log, for error messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
