//! The access layer (issue 14), two parts; `loadtests/access.sh` runs both.
//!
//! 1. In-process: the authorization decision (compiled sets, version compare, bit test)
//!    with 10,000 tenants, 100,000 memberships and 1,000 custom roles loaded, and the
//!    memory the policy state takes (a counting allocator measures it).
//! 2. Over HTTP, when `BALANCE_BENCH_URL` is set: seeds the same shape into the database,
//!    then measures an authenticated tenant-scoped `GET /api/v1/tenants/{id}` by a member
//!    whose grant comes from a custom role.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicIsize, Ordering},
    },
    time::Instant,
};

use access::{Permission, Policy, PolicyStore, TenantRoles};
use kernel::TenantId;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;

/// Counts live heap bytes, so the policy state's footprint can be read off.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const TENANTS: usize = 10_000;
const MEMBERSHIPS: usize = 100_000;
const CUSTOM_ROLES: usize = 1_000;
const BUILTIN: [&str; 5] = ["owner", "admin", "accountant", "viewer", "billing"];

/// One membership: its tenant, the tenant's policy version, its roles.
type Membership = (TenantId, i64, Vec<String>);

/// The shape both parts use: which tenant holds which custom roles, and the memberships.
struct Shape {
    tenants: Vec<TenantId>,
    /// `(tenant index, role name, permissions)`.
    roles: Vec<(usize, String, Vec<String>)>,
    /// `(tenant index, roles)`.
    members: Vec<(usize, Vec<String>)>,
}

fn shape(seed: u64) -> Shape {
    let mut rng = StdRng::seed_from_u64(seed);
    let tenants: Vec<TenantId> = (0..TENANTS).map(|_| TenantId::new()).collect();
    let all = Permission::all();
    // 1,000 custom roles on 500 tenants (two each), 3-12 permissions each.
    let roles: Vec<(usize, String, Vec<String>)> = (0..CUSTOM_ROLES)
        .map(|i| {
            let n = rng.random_range(3..=12);
            let perms = (0..n)
                .map(|_| all[rng.random_range(0..all.len())].to_string())
                .collect();
            (
                i / 2 * (TENANTS / (CUSTOM_ROLES / 2)),
                format!("custom-{}", i % 2),
                perms,
            )
        })
        .collect();
    // Ten members per tenant; a third of the members of tenants with custom roles hold one,
    // most with a built-in role beside it.
    let members = (0..MEMBERSHIPS)
        .map(|i| {
            let t = i / (MEMBERSHIPS / TENANTS);
            let has_custom = t.is_multiple_of(TENANTS / (CUSTOM_ROLES / 2));
            let mut r = vec![BUILTIN[rng.random_range(0..BUILTIN.len())].to_string()];
            if has_custom && rng.random_bool(1.0 / 3.0) {
                r.push(format!("custom-{}", rng.random_range(0..2)));
                if rng.random_bool(0.3) {
                    r.remove(0);
                }
            }
            (t, r)
        })
        .collect();
    Shape {
        tenants,
        roles,
        members,
    }
}

fn in_process() {
    let policy = Policy::load().expect("policies/ load");
    let shape = shape(14);
    let before = LIVE.load(Ordering::Relaxed);
    let store = PolicyStore::new(policy);
    // Every tenant cached at version 1 (most with no custom role): the worst case for memory.
    for (i, tenant) in shape.tenants.iter().enumerate() {
        let roles = shape
            .roles
            .iter()
            .filter(|(t, _, _)| *t == i)
            .map(|(_, n, p)| (n.as_str(), p.clone()));
        store.install(*tenant, Arc::new(TenantRoles::compile(1, roles)));
    }
    let state = LIVE.load(Ordering::Relaxed) - before;
    let (cached, custom) = store.cached_tenants();
    println!(
        "policy state: {cached} tenants, {custom} custom roles: {:.2} MiB ({:.0} bytes per tenant)",
        state as f64 / (1024.0 * 1024.0),
        state as f64 / cached as f64
    );
    let before = LIVE.load(Ordering::Relaxed);
    let members: Vec<Membership> = shape
        .members
        .iter()
        .map(|(t, r)| (shape.tenants[*t], 1, r.clone()))
        .collect();
    println!(
        "(the 100,000 memberships themselves, as the request path reads them from the database: {:.2} MiB, not policy state)",
        (LIVE.load(Ordering::Relaxed) - before) as f64 / (1024.0 * 1024.0)
    );

    let all = Permission::all();
    let mut rng = StdRng::seed_from_u64(7);
    let picks: Vec<(usize, Permission)> = (0..1_000_000)
        .map(|_| {
            (
                rng.random_range(0..members.len()),
                all[rng.random_range(0..all.len())],
            )
        })
        .collect();
    // Warm up, then time each decision (the timer itself costs a few tens of ns).
    let decide = |(m, p): &(usize, Permission)| {
        let (tenant, version, roles) = &members[*m];
        store
            .resolve(*tenant, *version, roles)
            .expect("cached")
            .contains(*p)
    };
    let mut granted = 0usize;
    for pick in &picks[..100_000] {
        granted += decide(pick) as usize;
    }
    let mut samples = Vec::with_capacity(picks.len());
    let mut custom_samples = Vec::new();
    for pick in &picks {
        let t = Instant::now();
        let ok = black_box(decide(black_box(pick)));
        let took = t.elapsed();
        granted += ok as usize;
        samples.push(took);
        if members[pick.0].2.iter().any(|r| r.starts_with("custom-")) {
            custom_samples.push(took);
        }
    }
    let started = Instant::now();
    for pick in &picks {
        granted += black_box(decide(black_box(pick))) as usize;
    }
    let per = started.elapsed().as_secs_f64() * 1e9 / picks.len() as f64;
    black_box(granted);
    let mut timer = Vec::with_capacity(100_000);
    for _ in 0..100_000 {
        let t = Instant::now();
        timer.push(black_box(t).elapsed());
    }
    loadtests::report_ns("authorization decision, all memberships", &mut samples);
    loadtests::report_ns(
        "authorization decision, members with a custom role",
        &mut custom_samples,
    );
    loadtests::report_ns("(reference: an empty timed section)", &mut timer);
    println!("authorization decision, back to back: {per:.1} ns each");
}

async fn over_http(base: &str) -> anyhow::Result<()> {
    let owner_url = std::env::var("BALANCE_DATABASE_OWNER_URL")?;
    let seconds: u64 = std::env::var("BALANCE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let password = "correct horse battery staple";
    let email = format!("bench-{}@example.com", uuid::Uuid::now_v7().simple());
    let r = client
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&json!({"email": email, "password": password, "name": "Bench"}))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 201, "signup: {}", r.text().await?);
    let login: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["access_token"].as_str().unwrap().to_string();
    let me: serde_json::Value = client
        .get(format!("{base}/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let user: uuid::Uuid = me["id"].as_str().unwrap().parse()?;

    // The same shape in the database, seeded as the owner (RLS is forced even for the
    // owner, so each tenant's rows go in with its setting).
    let shape = shape(14);
    let started = Instant::now();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&owner_url)
        .await?;
    let mut conn = pool.acquire().await?;
    sqlx::query(
        "INSERT INTO users (id, email, name)
         SELECT gen_random_uuid(), 'seed-' || g || '@example.com', 'Seed ' || g FROM generate_series(1, $1) g",
    )
    .bind((MEMBERSHIPS / 10) as i64)
    .execute(&mut *conn)
    .await?;
    let users: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM users WHERE email LIKE 'seed-%' ORDER BY email")
            .fetch_all(&mut *conn)
            .await?;
    let ids: Vec<uuid::Uuid> = shape.tenants.iter().map(|t| t.as_uuid()).collect();
    sqlx::query(
        "INSERT INTO tenants (id, name) SELECT id, 'Bench ' || id FROM unnest($1::uuid[]) id",
    )
    .bind(&ids)
    .execute(&mut *conn)
    .await?;
    #[allow(clippy::disallowed_methods)] // the seeding's own connection, no kernel handle
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let per_tenant = MEMBERSHIPS / TENANTS;
    for (t, tenant) in shape.tenants.iter().enumerate() {
        sqlx::query("SELECT set_config('balance.tenant_id', $1, true)")
            .bind(tenant.to_string())
            .execute(&mut *tx)
            .await?;
        let rows: Vec<&(usize, Vec<String>)> = shape.members[t * per_tenant..(t + 1) * per_tenant]
            .iter()
            .collect();
        let member_ids: Vec<uuid::Uuid> = (0..per_tenant)
            .map(|i| users[(t * per_tenant + i) % users.len()])
            .collect();
        let roles: Vec<String> = rows
            .iter()
            .map(|(_, r)| format!("{{{}}}", r.join(",")))
            .collect();
        sqlx::query(
            "INSERT INTO memberships (tenant_id, user_id, roles)
             SELECT $1, u, r::text[] FROM unnest($2::uuid[], $3::text[]) AS x(u, r)",
        )
        .bind(tenant)
        .bind(&member_ids)
        .bind(&roles)
        .execute(&mut *tx)
        .await?;
        let custom: Vec<&(usize, String, Vec<String>)> =
            shape.roles.iter().filter(|(i, _, _)| *i == t).collect();
        for (_, name, perms) in custom {
            let mut perms = perms.clone();
            perms.push("tenant:read".into());
            sqlx::query(
                "INSERT INTO tenant_roles (tenant_id, name, permissions) VALUES ($1, $2, $3)",
            )
            .bind(tenant)
            .bind(name)
            .bind(&perms)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    // The bench user reads a tenant with custom roles through one of them.
    let target = shape.tenants[0];
    sqlx::query("SELECT set_config('balance.tenant_id', $1, false)")
        .bind(target.to_string())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO memberships (tenant_id, user_id, roles) VALUES ($1, $2, '{custom-0}')",
    )
    .bind(target)
    .bind(user)
    .execute(&mut *conn)
    .await?;
    sqlx::query("ANALYZE").execute(&mut *conn).await?;
    drop(conn);
    println!(
        "seeded {TENANTS} tenants, {MEMBERSHIPS} memberships, {CUSTOM_ROLES} custom roles in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let url = format!("{base}/api/v1/tenants/{target}");
    let r = client.get(&url).bearer_auth(&token).send().await?;
    anyhow::ensure!(r.status() == 200, "GET {url}: {}", r.text().await?);
    for concurrency in [1usize, 8, 32] {
        let mut samples = loadtests::get_for(&client, &url, &token, concurrency, seconds).await;
        println!(
            "GET /tenants/{{id}} (custom role), {concurrency} clients: {:.0} requests/s",
            samples.len() as f64 / seconds as f64
        );
        loadtests::report(&format!("  latency, {concurrency} clients"), &mut samples);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    in_process();
    if let Ok(base) = std::env::var("BALANCE_BENCH_URL") {
        over_http(&base).await?;
    }
    Ok(())
}
