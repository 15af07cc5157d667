//! Sign-in throughput and authenticated reads (issue 12), against a running `balance serve`.
//!
//! `loadtests/identity.sh` starts the cluster and the server (release build) and runs this;
//! it prints logins per second with the argon2 bound, and `GET /me` per second with p50/p99.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use loadtests::report;
use serde_json::json;

const PASSWORD: &str = "correct horse battery staple";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base =
        std::env::var("BALANCE_BENCH_URL").unwrap_or_else(|_| "http://127.0.0.1:8181".into());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let seconds: u64 = std::env::var("BALANCE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);

    // The bound: one production argon2id hash on this machine, times the cores.
    let passwords = identity::Passwords::new(identity::Argon2Params::PRODUCTION);
    let mut hashes = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let _ = passwords.hash(PASSWORD);
        hashes.push(t.elapsed());
    }
    let (hash_p50, _) = loadtests::summary(&mut hashes);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    println!(
        "argon2id (m=19456, t=2, p=1): p50 {:.1} ms per hash → bound ≈ {:.0} logins/s on {cores} cores",
        hash_p50 / 1000.0,
        cores * 1e6 / hash_p50
    );

    let email = format!("bench-{}@example.com", uuid::Uuid::now_v7().simple());
    let r = client
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&json!({"email": email, "password": PASSWORD, "name": "Bench"}))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 201, "signup: {}", r.text().await?);

    for concurrency in [1usize, 2, 4] {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let until = Instant::now() + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (client, base, email, samples) =
                    (client.clone(), base.clone(), email.clone(), samples.clone());
                tokio::spawn(async move {
                    while Instant::now() < until {
                        let t = Instant::now();
                        let r = client
                            .post(format!("{base}/api/v1/auth/login"))
                            .json(&json!({"email": email, "password": PASSWORD}))
                            .send()
                            .await
                            .expect("login");
                        assert_eq!(r.status(), 200);
                        let _ = r.bytes().await;
                        samples.lock().unwrap().push(t.elapsed());
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await?;
        }
        let mut samples = samples.lock().unwrap().clone();
        println!(
            "logins, {concurrency} clients: {:.1}/s",
            samples.len() as f64 / seconds as f64
        );
        report(
            &format!("  login latency, {concurrency} clients"),
            &mut samples,
        );
    }

    let r = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await?;
    let token = r.json::<serde_json::Value>().await?["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!("{base}/api/v1/me");
    for concurrency in [1usize, 8, 32] {
        let mut samples = loadtests::get_for(&client, &url, &token, concurrency, seconds).await;
        println!(
            "GET /me, {concurrency} clients: {:.0} requests/s",
            samples.len() as f64 / seconds as f64
        );
        report(
            &format!("  GET /me latency, {concurrency} clients"),
            &mut samples,
        );
    }
    Ok(())
}
