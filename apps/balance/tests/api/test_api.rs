//! Routes that exist only to exercise a mechanism; mounted in the test app alone.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use kernel::{
    Actor, ApiResult, CursorSigner, Db, FieldErrors, JsonBody, Page, PageParams, Position, Problem,
    QueryId, TenantId, TenantTx, UserId, UserTx, Validate,
    idempotency::{self, Fingerprint, IdempotencyKey},
    page_object,
};
use poem::http::StatusCode;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Header, Path, Query},
    payload::{Json, PlainText},
};
use serde::Deserialize;

/// Test-only routes, with what they need from the platform.
pub struct TestApi {
    pub db: Db,
    pub cursors: CursorSigner,
    /// How many times the idempotent work actually ran.
    pub runs: Arc<AtomicU64>,
}

/// Acts as the user named by `x-test-user`, or as the system.
fn actor(user: &Option<String>) -> Actor {
    user.as_deref()
        .and_then(|u| u.parse().ok())
        .map(Actor::User)
        .unwrap_or(Actor::System)
}

#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub label: String,
    pub amount: i64,
}

#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EchoIn {
    pub name: String,
    pub lines: Vec<Line>,
}

impl Validate for EchoIn {
    fn validate(&self, errors: &mut FieldErrors) {
        errors.check(!self.name.trim().is_empty(), "name", "must not be blank");
        errors.check(
            self.name.chars().count() <= 100,
            "name",
            "must be at most 100 characters",
        );
        for (i, line) in self.lines.iter().enumerate() {
            errors.check(
                line.amount != 0,
                &format!("lines[{i}].amount"),
                "must not be zero",
            );
        }
    }
}

#[derive(Debug, Object)]
pub struct EchoOut {
    pub name: String,
    pub total: i64,
}

#[OpenApi(prefix_path = "/api/v1/_test")]
impl TestApi {
    /// Echoes a validated body.
    #[oai(path = "/echo", method = "post", operation_id = "test_echo")]
    async fn echo(&self, body: JsonBody<EchoIn>) -> ApiResult<Json<EchoOut>> {
        let total = body.lines.iter().map(|l| l.amount).sum();
        Ok(Json(EchoOut {
            name: body.into_inner().name,
            total,
        }))
    }

    /// Panics with something that must never reach a client.
    #[oai(path = "/panic", method = "get", operation_id = "test_panic")]
    async fn panic(&self) -> ApiResult<PlainText<String>> {
        panic!("secret internals: password=hunter2 at /srv/balance/src/db.rs:42");
    }

    /// Answers after `ms` milliseconds.
    #[oai(path = "/slow", method = "get", operation_id = "test_slow")]
    async fn slow(&self, ms: Query<u64>) -> ApiResult<PlainText<String>> {
        tokio::time::sleep(Duration::from_millis(ms.0)).await;
        Ok(PlainText("done".into()))
    }

    /// A resource that is never there.
    #[oai(path = "/items/:id", method = "get", operation_id = "test_item")]
    async fn item(&self, id: Path<uuid::Uuid>) -> ApiResult<PlainText<String>> {
        let _ = id;
        Err(Problem::not_found())
    }

    /// Creates a thing in a tenant, at most once per Idempotency-Key.
    #[oai(
        path = "/tenants/:tenant_id/things",
        method = "post",
        operation_id = "test_create_thing"
    )]
    async fn create_thing(
        &self,
        tenant_id: Path<TenantId>,
        #[oai(name = "Idempotency-Key")] key: Header<Option<String>>,
        #[oai(name = "x-test-user")] user: Header<Option<String>>,
        body: JsonBody<ThingIn>,
    ) -> ApiResult<ThingCreated> {
        let key = IdempotencyKey::parse_optional(key.0.as_deref())?;
        let mut tx = TenantTx::begin(&self.db, tenant_id.0, actor(&user.0)).await?;
        let fingerprint = Fingerprint::new("test_create_thing", body.digest());
        let base = format!("/api/v1/_test/tenants/{}/things", tenant_id.0);
        if let Some(thing) =
            idempotency::claim(&mut tx, key.as_ref(), fingerprint, StatusCode::CREATED).await?
        {
            return Ok(ThingCreated::new(thing, &base));
        }
        let thing = self.work(&mut tx, &body).await?;
        idempotency::commit(tx, key.as_ref(), StatusCode::CREATED, &thing).await?;
        Ok(ThingCreated::new(thing, &base))
    }

    /// Creates a thing of the caller's own, at most once per Idempotency-Key (per user).
    #[oai(
        path = "/me/things",
        method = "post",
        operation_id = "test_create_my_thing"
    )]
    async fn create_my_thing(
        &self,
        #[oai(name = "Idempotency-Key")] key: Header<Option<String>>,
        #[oai(name = "x-test-user")] user: Header<String>,
        body: JsonBody<ThingIn>,
    ) -> ApiResult<ThingCreated> {
        let key = IdempotencyKey::parse_optional(key.0.as_deref())?;
        let user: UserId = user.0.parse().map_err(|_| Problem::not_found())?;
        let mut tx = UserTx::begin(&self.db, user).await?;
        let fingerprint = Fingerprint::new("test_create_my_thing", body.digest());
        if let Some(thing) =
            idempotency::claim(&mut tx, key.as_ref(), fingerprint, StatusCode::CREATED).await?
        {
            return Ok(ThingCreated::new(thing, "/api/v1/_test/me/things"));
        }
        let thing = self.work(&mut tx, &body).await?;
        idempotency::commit(tx, key.as_ref(), StatusCode::CREATED, &thing).await?;
        Ok(ThingCreated::new(thing, "/api/v1/_test/me/things"))
    }

    /// Lists a tenant's members, newest first, a page at a time.
    #[oai(
        path = "/tenants/:tenant_id/members",
        method = "get",
        operation_id = "test_list_members"
    )]
    async fn list_members(
        &self,
        tenant_id: Path<TenantId>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<MemberPage>> {
        let tenant = tenant_id.0;
        let query = QueryId::new("test_list_members", &[&tenant.to_string()]);
        let params = PageParams::parse(limit.0, cursor.0.as_deref(), &self.cursors, &query)?;
        let after = match &params.after {
            Some(p) => Some((
                serde_json::from_value::<DateTime<Utc>>(p.key.clone())
                    .map_err(|_| Problem::internal())?,
                p.id,
            )),
            None => None,
        };
        let mut tx = TenantTx::begin(&self.db, tenant, Actor::System).await?;
        let rows: Vec<(uuid::Uuid, DateTime<Utc>)> = sqlx::query_as(
            "SELECT user_id, created_at FROM memberships
             WHERE tenant_id = $1
               AND ($2::timestamptz IS NULL OR (created_at, user_id) < ($2, $3))
             ORDER BY created_at DESC, user_id DESC
             LIMIT $4",
        )
        .bind(tenant)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(params.fetch_limit())
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        let members: Vec<Member> = rows
            .into_iter()
            .map(|(id, created_at)| Member {
                user_id: UserId::from_uuid(id),
                created_at,
            })
            .collect();
        let page = Page::from_rows(members, &params, &self.cursors, &query, |m| Position {
            key: serde_json::to_value(m.created_at).expect("a timestamp serialises"),
            id: m.user_id.as_uuid(),
        });
        Ok(Json(page.into()))
    }
}

#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThingIn {
    pub name: String,
    /// Fail after the work ran (nothing may stay written).
    #[serde(default)]
    pub fail: bool,
    /// Hold the transaction open this long (to overlap two requests).
    #[serde(default)]
    pub sleep_ms: u64,
}

impl Validate for ThingIn {}

#[derive(Debug, Clone, Object)]
pub struct Thing {
    pub id: uuid::Uuid,
    pub name: String,
    /// Which execution of the work produced this response.
    pub run: u64,
}

#[derive(ApiResponse)]
pub enum ThingCreated {
    /// Created.
    #[oai(status = 201)]
    Created(Json<Thing>, #[oai(header = "Location")] String),
}

impl ThingCreated {
    fn new(thing: Thing, base: &str) -> Self {
        let location = format!("{base}/{}", thing.id);
        ThingCreated::Created(Json(thing), location)
    }
}

#[derive(Debug, Clone, Object)]
#[oai(rename = "TestMember")]
pub struct Member {
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
}

page_object!(
    /// A page of members.
    MemberPage,
    Member
);

impl TestApi {
    async fn work<S: Send>(&self, _tx: &mut S, body: &ThingIn) -> Result<Thing, Problem> {
        let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(Duration::from_millis(body.sleep_ms)).await;
        if body.fail {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "test_failure",
                "The work failed",
            ));
        }
        Ok(Thing {
            id: uuid::Uuid::now_v7(),
            name: body.name.clone(),
            run,
        })
    }
}
