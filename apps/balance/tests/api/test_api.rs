//! Routes that exist only to exercise a mechanism; mounted in the test app alone.

use std::time::Duration;

use kernel::{ApiResult, FieldErrors, JsonBody, Problem, Validate};
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::{Json, PlainText},
};
use serde::Deserialize;

pub struct TestApi;

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
            name: body.0.name,
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
}
