//! Network namespaces, a bridge and nftables partitions for the nodes.
//!
//! Owns: one network namespace per node (`jepsen-n<id>`), a veth pair per
//! node (`jpv<id>` on the host side, `eth0` inside), the bridge `jpbr0` in the
//! root namespace with the harness's address [`HARNESS_IP`], and one nftables
//! table `inet jepsen` per node namespace whose `input` chain holds the
//! partition's drop rules. Node `id` gets `10.77.0.<id>`; only addresses of
//! these namespaces are ever targeted.
//!
//! Must not: touch any namespace, interface or nft table it did not create.
//! Everything it creates carries the prefix `jepsen-` (namespaces) or `jp`
//! (interfaces), which is what [`cleanup_leftovers`] removes.
//!
//! Caveats:
//! - Needs root, `ip` (iproute2) and `nft` (nftables). [`Net::check_available`]
//!   says which is missing; the harness then runs without partitions.
//! - One networked run at a time per machine: the names are fixed, and an
//!   exclusive lock on [`LOCK_FILE`] guards them.
//! - The partition rules drop packets *between nodes*; the harness (on the
//!   bridge) can always reach every node, as Jepsen's clients can.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

/// The bridge in the root namespace.
pub const BRIDGE: &str = "jpbr0";
/// Prefix of every namespace this module creates.
pub const NETNS_PREFIX: &str = "jepsen-n";
/// Prefix of the host-side veth interfaces.
pub const VETH_PREFIX: &str = "jpv";
/// The harness's address on the bridge.
pub const HARNESS_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 254);
/// Held (flock) while a networked run owns the names above.
pub const LOCK_FILE: &str = "/run/jepsen-style-tests-net.lock";
/// Node ids must fit the last octet and stay clear of the harness's address.
pub const NODE_ID_MAX: u64 = 200;

pub fn netns_name(id: u64) -> String {
    format!("{NETNS_PREFIX}{id}")
}

pub fn node_ip(id: u64) -> Ipv4Addr {
    assert!(
        (1..=NODE_ID_MAX).contains(&id),
        "node id {id} outside 1..={NODE_ID_MAX}"
    );
    Ipv4Addr::new(10, 77, 0, id as u8)
}

/// Runs a command to completion; `Err` carries its stderr.
fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `nft -f -` inside a node's namespace with `script` on stdin.
fn nft_in(id: u64, script: &str) -> Result<(), String> {
    use std::io::Write;
    let ns = netns_name(id);
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("ip netns exec {ns} nft: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| format!("nft stdin: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft in {ns}: {}: {script}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// The namespaces and bridge of one run. Dropping it removes them.
pub struct Net {
    node_ids: Vec<u64>,
    /// Holds the flock on [`LOCK_FILE`] for the run's lifetime.
    _lock: File,
    torn_down: bool,
}

impl Net {
    /// Why partitions cannot run here, if they cannot.
    pub fn check_available() -> Result<(), String> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root".into());
        }
        for program in ["ip", "nft"] {
            if !on_path(program) {
                return Err(format!(
                    "`{program}` not found on PATH (apt-get install iproute2 nftables)"
                ));
            }
        }
        Ok(())
    }

    /// Creates the bridge, one namespace per node and its nft table.
    pub fn setup(node_ids: &[u64]) -> Result<Net, String> {
        Self::check_available()?;
        let lock = File::create(LOCK_FILE).map_err(|e| format!("{LOCK_FILE}: {e}"))?;
        // SAFETY: a valid open fd; LOCK_NB makes this return at once.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(format!("another networked jepsen run holds {LOCK_FILE}"));
        }
        // Leftovers of a run that was killed would make every `add` below fail.
        // Processes are left alone here: a loopback run may be going on.
        let removed = cleanup_leftovers(false);
        if !removed.is_empty() {
            eprintln!(
                "jepsen: removed leftovers of an earlier run: {}",
                removed.join(", ")
            );
        }
        let mut net = Net {
            node_ids: Vec::new(),
            _lock: lock,
            torn_down: false,
        };
        run(&["ip", "link", "add", BRIDGE, "type", "bridge"])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{HARNESS_IP}/24"),
            "dev",
            BRIDGE,
        ])?;
        run(&["ip", "link", "set", BRIDGE, "up"])?;
        for &id in node_ids {
            net.add_node(id)?;
        }
        Ok(net)
    }

    fn add_node(&mut self, id: u64) -> Result<(), String> {
        let ns = netns_name(id);
        let veth = format!("{VETH_PREFIX}{id}");
        let peer = format!("{VETH_PREFIX}{id}p");
        run(&["ip", "netns", "add", &ns])?;
        self.node_ids.push(id);
        run(&[
            "ip", "link", "add", &veth, "type", "veth", "peer", "name", &peer,
        ])?;
        run(&["ip", "link", "set", &peer, "netns", &ns])?;
        run(&["ip", "link", "set", &veth, "master", BRIDGE])?;
        run(&["ip", "link", "set", &veth, "up"])?;
        run(&["ip", "-n", &ns, "link", "set", &peer, "name", "eth0"])?;
        run(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/24", node_ip(id)),
            "dev",
            "eth0",
        ])?;
        run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        nft_in(id, "table inet jepsen {\n chain input {\n  type filter hook input priority 0; policy accept;\n }\n}\n")
    }

    /// The command prefix that runs a program inside node `id`'s namespace.
    pub fn exec_prefix(id: u64) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), netns_name(id)]
    }

    /// Installs a partition: each `(at, from)` makes node `at` drop every
    /// packet from node `from`. Replaces any earlier partition.
    pub fn partition(&self, drops: &[(u64, u64)]) -> Result<(), String> {
        self.heal()?;
        for &at in &self.node_ids {
            let rules: String = drops
                .iter()
                .filter(|(a, _)| *a == at)
                .map(|(_, from)| {
                    format!(
                        "add rule inet jepsen input ip saddr {} drop\n",
                        node_ip(*from)
                    )
                })
                .collect();
            if !rules.is_empty() {
                nft_in(at, &rules)?;
            }
        }
        Ok(())
    }

    /// Removes every drop rule.
    pub fn heal(&self) -> Result<(), String> {
        let mut first_error = None;
        for &id in &self.node_ids {
            if let Err(e) = nft_in(id, "flush chain inet jepsen input\n") {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Removes the namespaces (their nft tables go with them) and the bridge.
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        for &id in &self.node_ids {
            let _ = run(&["ip", "link", "del", &format!("{VETH_PREFIX}{id}")]);
            let _ = run(&["ip", "netns", "del", &netns_name(id)]);
        }
        let _ = run(&["ip", "link", "del", BRIDGE]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Removes every namespace and interface this harness may have left behind
/// (by name prefix) and, with `kill_processes`, every process it started (by
/// the [`RUN_MARKER_ENV`] marker in the process's environment). Returns what
/// it removed.
pub fn cleanup_leftovers(kill_processes: bool) -> Vec<String> {
    let mut removed = if kill_processes {
        kill_marked_processes()
    } else {
        Vec::new()
    };
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if name.starts_with(NETNS_PREFIX) && run(&["ip", "netns", "del", name]).is_ok() {
                removed.push(format!("netns {name}"));
            }
        }
    }
    if let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "12: jpv1@if11: <...>" -> "jpv1"
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            if (name.starts_with(VETH_PREFIX) || name == BRIDGE)
                && run(&["ip", "link", "del", name]).is_ok()
            {
                removed.push(format!("link {name}"));
            }
        }
    }
    removed
}

/// The environment variable every node process the harness starts carries;
/// `cleanup` finds leftovers by it, never by a process name.
pub const RUN_MARKER_ENV: &str = "JEPSEN_RUN";

/// SIGKILLs processes whose environment carries [`RUN_MARKER_ENV`] (after a
/// SIGCONT, so paused ones die too). Skips this process.
fn kill_marked_processes() -> Vec<String> {
    let mut killed = Vec::new();
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return killed;
    };
    let marker = format!("{RUN_MARKER_ENV}=");
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var.starts_with(marker.as_bytes()))
        {
            // SAFETY: plain syscalls on a pid we just read; a race with its exit is harmless.
            unsafe {
                libc::kill(pid as i32, libc::SIGCONT);
                libc::kill(pid as i32, libc::SIGKILL);
            }
            killed.push(format!("process {pid}"));
        }
    }
    killed
}
