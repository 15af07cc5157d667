//! Shared pieces of the benchmarks: timing and percentile reports.

use std::time::Duration;

/// Median and p99 of `samples`, in microseconds.
pub fn summary(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1e6
    };
    (at(0.5), at(0.99))
}

/// Prints one result line: `name  median  p99`.
pub fn report(name: &str, samples: &mut [Duration]) {
    let (p50, p99) = summary(samples);
    println!(
        "{name:<48} p50 {p50:>9.1} µs   p99 {p99:>9.1} µs   (n = {})",
        samples.len()
    );
}

/// Prints one result line in nanoseconds (for in-process decisions).
pub fn report_ns(name: &str, samples: &mut [Duration]) {
    let (p50, p99) = summary(samples);
    println!(
        "{name:<52} p50 {:>7.0} ns   p99 {:>7.0} ns   (n = {})",
        p50 * 1e3,
        p99 * 1e3,
        samples.len()
    );
}

/// Authenticated `GET url` from `concurrency` clients for `seconds`; every request must
/// answer 200. Returns each request's latency.
pub async fn get_for(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    concurrency: usize,
    seconds: u64,
) -> Vec<Duration> {
    let until = std::time::Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, token) = (client.clone(), url.to_string(), token.to_string());
            tokio::spawn(async move {
                let mut local = Vec::new();
                while std::time::Instant::now() < until {
                    let t = std::time::Instant::now();
                    let r = client
                        .get(&url)
                        .bearer_auth(&token)
                        .send()
                        .await
                        .expect("GET");
                    assert_eq!(r.status(), 200, "GET {url}");
                    let _ = r.bytes().await;
                    local.push(t.elapsed());
                }
                local
            })
        })
        .collect();
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await.expect("a load task"));
    }
    samples
}
