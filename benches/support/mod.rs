//! What the benchmark programs share: reading their settings and percentiles.
#![allow(dead_code)]

pub mod histogram;

use serde_json::Value;

/// A required setting that the benchmark's script exports.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the benchmark through its make target"))
}

/// The `p` quantile (0..=1) of the samples (sorted in place).
pub fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        0.0
    } else {
        v[((v.len() - 1) as f64 * p).round() as usize]
    }
}

/// The machine's (busy, total) ticks over all cores, from /proc/stat: how busy the
/// machine was between two readings is the busy difference over the total difference.
pub fn machine_ticks() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<f64> = stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|s| s.parse().ok()).collect();
    let total: f64 = cpu.iter().sum();
    // idle and iowait are fields 4 and 5.
    let idle = cpu.get(3).copied().unwrap_or(0.0) + cpu.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

/// POSTs JSON as a tenant and returns the JSON answer.
pub async fn post_json(client: &reqwest::Client, url: String, tenant: &str, token: &str, body: &Value) -> Value {
    client.post(url).bearer_auth(token).header("X-Tenant-ID", tenant).json(body).send().await.unwrap().json().await.unwrap()
}
