//! Servers under test run as child processes (the program with `serve`, the baselines with the
//! hidden `bench serve-*` commands), so that each has its own runtime and its memory and CPU time
//! can be read from `/proc/<pid>` without the load generator's in the numbers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// `/proc` reports CPU time in clock ticks of `USER_HZ`, which is 100 on Linux.
const TICKS_PER_SEC: f64 = 100.0;

/// How to start one server.
#[derive(Debug, Clone)]
pub struct ServerCommand {
    /// The executable.
    pub exe: PathBuf,
    /// Arguments; `{listen}` is replaced by the chosen address.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Where its stderr goes.
    pub log: PathBuf,
}

/// A running server child; killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: PathBuf,
}

/// Memory and CPU of a process, from `/proc/<pid>/status` and `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcUsage {
    /// Resident set size now, KiB.
    pub rss_kib: u64,
    /// Peak resident set size so far, KiB.
    pub hwm_kib: u64,
    /// User + system CPU time so far, seconds.
    pub cpu_secs: f64,
}

impl ServerCommand {
    /// Picks a free loopback port, starts the server on it and waits until `GET /healthz` answers.
    pub async fn start(&self) -> anyhow::Result<ServerProcess> {
        let mut last_error = None;
        // The port is free when chosen but not reserved; another process may take it before the
        // child binds. Then the child exits, and a new port is tried.
        for _ in 0..3 {
            let addr = free_port()?;
            match self.start_on(addr).await {
                Ok(p) => return Ok(p),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    /// Starts the server on `addr` and waits for its health check.
    pub async fn start_on(&self, addr: SocketAddr) -> anyhow::Result<ServerProcess> {
        let args: Vec<String> = self.args.iter().map(|a| a.replace("{listen}", &addr.to_string())).collect();
        let log = std::fs::File::create(&self.log).with_context(|| format!("creating {}", self.log.display()))?;
        let child = Command::new(&self.exe)
            .args(&args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        let mut process = ServerProcess { child, addr, log: self.log.clone() };
        process.wait_healthy(Duration::from_secs(30)).await?;
        Ok(process)
    }
}

impl ServerProcess {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its memory and CPU time now.
    pub fn usage(&self) -> anyhow::Result<ProcUsage> {
        proc_usage(&format!("/proc/{}", self.pid()))
    }

    async fn wait_healthy(&mut self, limit: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let url = format!("http://{}/healthz", self.addr);
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("{status} before it was healthy; its log: {}", tail(&self.log));
            }
            if let Ok(res) = http.get(&url).send().await
                && res.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                anyhow::bail!("not healthy within {limit:?}; its log: {}", tail(&self.log));
            }
            // Polling a child that is still starting; there is nothing to wait on instead.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This process's memory and CPU time (the load generator and the in-process local zone).
pub fn self_usage() -> anyhow::Result<ProcUsage> {
    proc_usage("/proc/self")
}

fn proc_usage(dir: &str) -> anyhow::Result<ProcUsage> {
    let status = std::fs::read_to_string(format!("{dir}/status")).with_context(|| format!("reading {dir}/status"))?;
    let stat = std::fs::read_to_string(format!("{dir}/stat")).with_context(|| format!("reading {dir}/stat"))?;
    parse_usage(&status, &stat).with_context(|| format!("parsing {dir}/status and stat"))
}

/// Parses `VmRSS`/`VmHWM` from `status` and `utime`/`stime` (fields 14 and 15) from `stat`.
fn parse_usage(status: &str, stat: &str) -> Option<ProcUsage> {
    let kib = |key: &str| {
        status.lines().find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
    };
    // The command name (field 2) may hold spaces and parentheses; the fields after it are plain.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // `after_comm` starts at field 3, so field n is at index n - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ProcUsage {
        rss_kib: kib("VmRSS:")?,
        hwm_kib: kib("VmHWM:")?,
        cpu_secs: (utime + stime) as f64 / TICKS_PER_SEC,
    })
}

/// A loopback address with a port that was free a moment ago.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?)
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_parsed_from_status_and_a_stat_line_whose_name_has_spaces() {
        let status = "Name:\tzone-program\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t3\n";
        let stat = "42 (zone (prog) x) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 2 3";
        let u = parse_usage(status, stat).unwrap();
        assert_eq!(u, ProcUsage { rss_kib: 10240, hwm_kib: 20480, cpu_secs: 3.0 });
    }

    #[test]
    fn this_process_has_a_resident_set_and_cpu_time() {
        let u = self_usage().unwrap();
        assert!(u.rss_kib > 0 && u.hwm_kib >= u.rss_kib, "{u:?}");
    }
}
