//! `devnet down`: stop every process, remove every namespace and link, then the directory.

use super::*;

/// What `down` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DownReport {
    pub stopped: Vec<String>,
    pub namespaces: Vec<String>,
    pub links: Vec<String>,
    pub removed_dir: bool,
}

/// Stops every process (whole process groups: agents first, so they remove their interfaces
/// and sockets while the chain is still there), removes every namespace and link with the
/// devnet's prefix, and the directory. Idempotent: a missing devnet is not an error.
pub fn down(dir: &Path) -> Result<DownReport, DevnetError> {
    let mut report = DownReport::default();
    let Some(state) = DevnetState::load(dir)? else {
        if dir.join("logs").is_dir() {
            std::fs::remove_dir_all(dir)?;
            report.removed_dir = true;
        }
        return Ok(report);
    };
    let grace = Duration::from_secs(10);
    let mut order: Vec<&ProcRecord> = Vec::new();
    for n in &state.nodes {
        order.extend(n.agent.iter());
    }
    for n in &state.nodes {
        order.extend(n.devtee.iter());
    }
    // Services in reverse start order: the gateway and Indexer before the chain they read.
    order.extend(state.services.iter().rev());
    // Agents stop in parallel: each may take its grace period to leave the mesh.
    std::thread::scope(|scope| {
        for p in &order {
            if proc::alive(p.pid) {
                report.stopped.push(format!("{} (pid {})", p.name, p.pid));
            }
            let pid = p.pid;
            scope.spawn(move || proc::stop_group(pid, grace));
        }
    });
    for n in &state.nodes {
        let _ = std::fs::remove_file(wg_socket(&n.interface));
    }
    let ours = |ns: &str| {
        ns == state.gw_ns
            || ns == format!("{}ix", state.prefix)
            || ns
                .strip_prefix(&format!("{}n", state.prefix))
                .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
    };
    for ns in netns::list_namespaces().iter().filter(|ns| ours(ns)) {
        netns::delete_namespace(ns);
        report.namespaces.push(ns.clone());
    }
    if std::path::Path::new("/sys/class/net")
        .join(&state.host_if)
        .exists()
    {
        netns::delete_link(&state.host_if);
        report.links.push(state.host_if.clone());
    }
    let left: Vec<String> = netns::list_namespaces()
        .into_iter()
        .filter(|ns| ours(ns))
        .collect();
    // A killed process can linger briefly while the kernel tears down its TUN device and
    // sockets; give it a moment before calling it a leak.
    let settle = std::time::Instant::now() + Duration::from_secs(5);
    while order.iter().any(|p| proc::alive(p.pid)) && std::time::Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(50));
    }
    let alive: Vec<String> = order
        .iter()
        .filter(|p| proc::alive(p.pid))
        .map(|p| format!("{} (pid {})", p.name, p.pid))
        .collect();
    if !left.is_empty() || !alive.is_empty() {
        return Err(DevnetError::Setup(format!(
            "could not remove everything: namespaces {left:?}, processes {alive:?}"
        )));
    }
    std::fs::remove_dir_all(&state.dir)?;
    report.removed_dir = true;
    Ok(report)
}

/// Namespaces and host links left by any devnet (prefix `amd<k>`), for leak checks.
pub fn leftovers() -> Vec<String> {
    let is_devnet = |name: &str| {
        name.strip_prefix(netns::PREFIX_STEM)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
    };
    let mut v: Vec<String> = netns::list_namespaces()
        .into_iter()
        .filter(|n| is_devnet(n))
        .collect();
    if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
        v.extend(
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| is_devnet(n)),
        );
    }
    v
}
