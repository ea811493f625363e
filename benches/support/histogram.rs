//! A histogram read from a service's `/metrics` (OpenMetrics text), and the difference of
//! two scrapes: what one benchmark arm added. Quantiles are bucket upper bounds ("≤ le").

use serde_json::{json, Value};

#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// (upper bound, cumulative count), in the order of the exposition.
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl Histogram {
    /// The histogram `name` (without `_bucket`/`_sum`/`_count`) in `text`.
    pub fn parse(text: &str, name: &str) -> Histogram {
        let mut h = Histogram::default();
        for line in text.lines().filter(|l| l.starts_with(name)) {
            let Some((key, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            if let Some(rest) = key.strip_prefix(&format!("{name}_bucket{{le=\"")) {
                let le = rest.trim_end_matches("\"}");
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::INFINITY) };
                h.buckets.push((le, value));
            } else if key == format!("{name}_sum") {
                h.sum = value;
            } else if key == format!("{name}_count") {
                h.count = value;
            }
        }
        h
    }

    /// What was observed after `before` was scraped.
    pub fn since(&self, before: &Histogram) -> Histogram {
        let buckets =
            self.buckets.iter().map(|&(le, n)| (le, n - before.buckets.iter().find(|(b, _)| *b == le).map_or(0.0, |(_, m)| *m))).collect();
        Histogram { buckets, sum: self.sum - before.sum, count: self.count - before.count }
    }

    /// Both histograms' observations together (buckets matched by bound).
    pub fn plus(&self, other: &Histogram) -> Histogram {
        if self.buckets.is_empty() {
            return other.clone();
        }
        let buckets =
            self.buckets.iter().map(|&(le, n)| (le, n + other.buckets.iter().find(|(b, _)| *b == le).map_or(0.0, |(_, m)| *m))).collect();
        Histogram { buckets, sum: self.sum + other.sum, count: self.count + other.count }
    }

    /// The smallest bucket bound holding at least the `q` quantile.
    pub fn quantile(&self, q: f64) -> f64 {
        let want = self.count * q;
        self.buckets.iter().find(|(_, n)| *n >= want && *n > 0.0).map_or(0.0, |(le, _)| *le)
    }

    /// count, mean, p50 and p99 (bucket bounds), each scaled by `unit` (e.g. 1000 for ms).
    pub fn summary(&self, unit: f64) -> Value {
        let r = |x: f64| if x.is_finite() { (x * unit * 1000.0).round() / 1000.0 } else { f64::MAX };
        let mean = if self.count > 0.0 { self.sum / self.count } else { 0.0 };
        json!({"count": self.count, "mean": r(mean), "p50_le": r(self.quantile(0.5)), "p99_le": r(self.quantile(0.99))})
    }
}

/// The service's `/metrics` text.
pub async fn scrape(base: &str) -> String {
    match reqwest::get(format!("{base}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// What the service's group-commit appender did between two scrapes: batches, their
/// commit time (ms) and their size (entries).
pub fn appends(before: &str, after: &str) -> Value {
    appends_over(&[(before.to_owned(), after.to_owned())])
}

/// [`appends`] summed over several (before, after) pairs: an arm run in turns.
pub fn appends_over(turns: &[(String, String)]) -> Value {
    let over = |name: &str| {
        turns.iter().fold(Histogram::default(), |acc, (before, after)| {
            acc.plus(&Histogram::parse(after, name).since(&Histogram::parse(before, name)))
        })
    };
    json!({
        "batch_commit_ms": over("aumos_governance_ledger_append_duration_seconds").summary(1000.0),
        "batch_entries": over("aumos_governance_ledger_append_batch_entries").summary(1.0),
    })
}
