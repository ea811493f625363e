//! The load generator's own cost, so that no arm's figure is mistaken for the service's
//! when it is the generator's:
//! - [`drive`] runs N concurrent clients for a while and, beside throughput and
//!   latency, measures the CPU this process used (cores) and how busy the whole machine was;
//!   [`drive_interleaved`] runs several arms in turns, so that their ratios see the same
//!   drift of the machine's speed;
//! - [`static_server`] answers every POST with a fixed body of the size of an evaluate
//!   answer, from one thread: the `generator` arm drives it exactly as the other arms drive
//!   the service, which gives the most this generator can send on this machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Builds one request of an arm (a fresh one for each send).
pub type MakeRequest = Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync>;

/// One arm's figures.
#[derive(Debug, Clone)]
pub struct Arm {
    pub clients: usize,
    pub rps: f64,
    pub p50: f64,
    pub p99: f64,
    pub errors: usize,
    /// CPU used by this process (the generator), in cores.
    pub generator_cores: f64,
    /// The share of all the machine's cores that were busy (0..=1).
    pub machine_busy: f64,
}

impl Arm {
    pub fn json(&self) -> Value {
        let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
        json!({"clients": self.clients, "rps": self.rps.round(), "p50_ms": r3(self.p50), "p99_ms": r3(self.p99), "errors": self.errors,
               "generator_cores": (self.generator_cores * 100.0).round() / 100.0, "machine_busy": (self.machine_busy * 100.0).round() / 100.0})
    }
}

/// CPU seconds this process has used (all threads): utime + stime from /proc/self/stat, in
/// USER_HZ ticks (100 per second on Linux).
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line; here (after the state, field 3) 11 and 12.
    (tick(11) + tick(12)) / 100.0
}

/// Drives `make` with `clients` concurrent clients for `d` (after 50 warm-up requests).
pub async fn drive(name: &str, clients: usize, d: Duration, make: MakeRequest) -> Arm {
    drive_interleaved(&[(name.to_owned(), make)], clients, d, 1).await.remove(0)
}

/// Drives each of `arms` with `clients` concurrent clients for `d` in all, in `rounds`
/// turns of `d / rounds` each, one arm after the other (after 50 warm-up requests each):
/// arms measured side by side see the same drift of the machine's speed, so their ratio
/// is steadier than that of arms run one after the other.
pub async fn drive_interleaved(arms: &[(String, MakeRequest)], clients: usize, d: Duration, rounds: u32) -> Vec<Arm> {
    let rounds = rounds.max(1);
    let client = reqwest::Client::builder().pool_max_idle_per_host(clients * arms.len()).tcp_nodelay(true).build().unwrap();
    for (_, make) in arms {
        for _ in 0..50 {
            let _ = make(&client).send().await.unwrap().bytes().await;
        }
    }
    let names: Vec<&str> = arms.iter().map(|(n, _)| n.as_str()).collect();
    match rounds {
        1 => eprintln!("{}: {clients} concurrent clients for {} s", names.join(" | "), d.as_secs()),
        _ => eprintln!("{}: {clients} concurrent clients for {} s each, in {rounds} turns", names.join(" | "), d.as_secs()),
    }
    let mut slices: Vec<Vec<Slice>> = arms.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, (_, make)) in arms.iter().enumerate() {
            // A pause between turns: what a service still does for its last turn (its
            // projectors catching up, the notary) lands in no arm's turn.
            if rounds > 1 {
                tokio::time::sleep(TURN_PAUSE).await;
            }
            slices[i].push(slice(&client, clients, d / rounds, make).await);
        }
    }
    slices.into_iter().map(|s| Arm::of(clients, s)).collect()
}

/// The idle time before each turn of interleaved arms.
const TURN_PAUSE: Duration = Duration::from_millis(500);

/// One turn of an arm: its latencies, errors and what it cost.
struct Slice {
    lat: Vec<f64>,
    errors: usize,
    elapsed: f64,
    cpu: f64,
    busy: f64,
    total: f64,
}

async fn slice(client: &reqwest::Client, clients: usize, d: Duration, make: &MakeRequest) -> Slice {
    let (cpu0, (busy0, total0)) = (own_cpu_seconds(), super::support::machine_ticks());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, make) = (client.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            while start.elapsed() < d {
                let t = Instant::now();
                match make(&client).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let (mut lat, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.unwrap();
        lat.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (cpu1, (busy1, total1)) = (own_cpu_seconds(), super::support::machine_ticks());
    Slice { lat, errors, elapsed, cpu: cpu1 - cpu0, busy: busy1 - busy0, total: total1 - total0 }
}

impl Arm {
    /// An arm's figures over all its turns.
    fn of(clients: usize, slices: Vec<Slice>) -> Arm {
        let elapsed: f64 = slices.iter().map(|s| s.elapsed).sum();
        let (cpu, busy, total) = slices.iter().fold((0.0, 0.0, 0.0), |(c, b, t), s| (c + s.cpu, b + s.busy, t + s.total));
        let errors = slices.iter().map(|s| s.errors).sum();
        let mut all: Vec<f64> = slices.into_iter().flat_map(|s| s.lat).collect();
        let (rps, p50, p99) = (all.len() as f64 / elapsed, super::support::pct(&mut all, 0.5), super::support::pct(&mut all, 0.99));
        let machine_busy = if total > 0.0 { busy / total } else { 0.0 };
        Arm { clients, rps, p50, p99, errors, generator_cores: cpu / elapsed, machine_busy }
    }
}

/// Starts a server on its own thread (one core at most) that answers every request with
/// `body`; returns its base URL.
pub fn static_server(body: Value) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let body = Arc::new(serde_json::to_vec(&body).unwrap());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().fallback(move || {
                let body = body.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], body.as_ref().clone()) }
            });
            axum::serve(listener, app).await.unwrap();
        });
    });
    url
}
