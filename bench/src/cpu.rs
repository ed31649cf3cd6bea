//! CPU time per request: what each process of a run spent on one HTTP
//! request, from the processes' own CPU clocks.
//!
//! Why: on a shared 2-core box, throughput and latency move with the
//! neighbours' load; the CPU a process burns per request moves less, so a
//! change to the gateway or the nodes can be judged by its cost per request
//! on a busy box. It still moves: contention adds cache misses and context
//! switches (the gateway's figure ranged 78–119 µs over four runs of one
//! command on a busy box), so compare medians of several runs. Sources: the
//! generator's own process clock, the gateway's
//! `gateway_process_cpu_ms_total`, each node's
//! `booking_process_cpu_ms_total`, and `/proc/<pid>/stat` for the echo
//! server (a child with no metrics).
//!
//! Owns: sampling those clocks and dividing. Must not: attribute time
//! between processes (each figure is one process's, or the nodes' sum), or
//! claim more than 10 ms resolution for `/proc` samples.

use std::time::Duration;

use crate::node_metrics::counter_sum;

/// CPU clocks at one instant, in ms. `None`: that source did not answer.
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    pub generator_ms: u64,
    pub gateway_ms: Option<u64>,
    /// Summed over the nodes.
    pub nodes_ms: Option<u64>,
}

/// CPU time per request over an interval, in µs, by process.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct CpuPerRequest {
    pub generator_us: f64,
    pub gateway_us: Option<f64>,
    /// The three nodes together (leader and followers).
    pub nodes_us: Option<f64>,
}

impl CpuPerRequest {
    /// Gateway and nodes together: the stack's cost of a request (`None`
    /// unless both answered).
    pub fn stack_us(&self) -> Option<f64> {
        Some(self.gateway_us? + self.nodes_us?)
    }
}

/// The clocks now: the generator's, and the gateway's and nodes' through
/// their metrics endpoints (`gateway_url` without the path; empty
/// `metrics_urls`: no nodes).
pub async fn sample(gateway_url: Option<&str>, metrics_urls: &[String]) -> CpuSample {
    let gateway_ms = match gateway_url {
        Some(url) => gateway_cpu_ms(url).await,
        None => None,
    };
    let nodes_ms = if metrics_urls.is_empty() {
        None
    } else {
        counter_sum(metrics_urls, "booking_process_cpu_ms_total").await
    };
    CpuSample {
        generator_ms: self_cpu_ms(),
        gateway_ms,
        nodes_ms,
    }
}

/// What each clock advanced between `before` and `after`, per request.
pub fn per_request(before: &CpuSample, after: &CpuSample, requests: u64) -> CpuPerRequest {
    let n = requests.max(1) as f64;
    let us = |b: u64, a: u64| a.saturating_sub(b) as f64 * 1000.0 / n;
    CpuPerRequest {
        generator_us: us(before.generator_ms, after.generator_ms),
        gateway_us: before
            .gateway_ms
            .zip(after.gateway_ms)
            .map(|(b, a)| us(b, a)),
        nodes_us: before.nodes_ms.zip(after.nodes_ms).map(|(b, a)| us(b, a)),
    }
}

/// This process's user + system CPU time, in ms.
pub fn self_cpu_ms() -> u64 {
    cpu_time::ProcessTime::try_now().map_or(0, |t| t.as_duration().as_millis() as u64)
}

/// Another process's user + system CPU time, in ms, from `/proc/<pid>/stat`
/// (clock-tick resolution, 10 ms on Linux); `None` if it is gone.
pub fn pid_cpu_ms(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count
    // fields after its closing ')'. utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks_per_s = if ticks_per_s > 0 {
        ticks_per_s as u64
    } else {
        100
    };
    Some((utime + stime) * 1000 / ticks_per_s)
}

/// The gateway's `gateway_process_cpu_ms_total`.
async fn gateway_cpu_ms(gateway_url: &str) -> Option<u64> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let text = http
        .get(format!("{gateway_url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with("gateway_process_cpu_ms_total "))?;
    line.rsplit(' ').next()?.parse().ok()
}

/// One line for the reports: `gateway 85 µs, nodes 60 µs, generator 40 µs`.
pub fn describe(c: &CpuPerRequest) -> String {
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0} µs"));
    format!(
        "gateway {}, nodes {} (the three together), generator {:.0} µs",
        opt(c.gateway_us),
        opt(c.nodes_us),
        c.generator_us
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the clocks read something real: our own CPU time grows with
    /// work, and `/proc` of this very process agrees with the process clock within
    /// the tick resolution and the work done between the two reads.
    #[test]
    fn clocks_follow_work() {
        let before = self_cpu_ms();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = self_cpu_ms();
        assert!(after >= before + 50, "{before} -> {after}");
        let proc_ms = pid_cpu_ms(std::process::id()).expect("own /proc entry");
        let own = self_cpu_ms();
        assert!(
            proc_ms + 30 >= after && proc_ms <= own + 30,
            "/proc {proc_ms} ms vs the process clock {after}..{own} ms"
        );
    }

    /// Goal: per-request figures divide the clocks' advance by the count.
    #[test]
    fn per_request_divides() {
        let b = CpuSample {
            generator_ms: 100,
            gateway_ms: Some(1_000),
            nodes_ms: None,
        };
        let a = CpuSample {
            generator_ms: 300,
            gateway_ms: Some(1_500),
            nodes_ms: Some(9),
        };
        let c = per_request(&b, &a, 10_000);
        assert_eq!(c.generator_us, 20.0);
        assert_eq!(c.gateway_us, Some(50.0));
        assert_eq!(c.nodes_us, None);
        assert_eq!(c.stack_us(), None);
    }
}
