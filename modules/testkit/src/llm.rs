//! An LLM stand-in that speaks OpenAI's chat-completions wire format
//! (`POST /v1/chat/completions`) on loopback, so the categorization pipeline's fallback is
//! tested against real HTTP, real JSON and real failure shapes (429 with `Retry-After`,
//! 500, a refusal, content that is not JSON, a slow model) without a network or a key.
//!
//! In [`LlmMode::Answer`] it answers by a keyword policy ([`LlmStandIn::answer_with`]), so a
//! test knows which category each transaction gets. It keeps every request body, so a test
//! can check exactly what left the platform (data minimisation).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use poem::{
    EndpointExt, Request, Response, Route, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
    post,
    web::Data,
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// How the stand-in answers the next requests; switch with [`LlmStandIn::set_mode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmMode {
    /// 200 with answers by the keyword policy of [`LlmStandIn::answer_with`].
    Answer,
    /// 200 with a well-formed completion whose message content is not JSON.
    Malformed,
    /// Sleeps this long, then answers as in [`LlmMode::Answer`].
    Slow(Duration),
    /// 429 with `Retry-After: <retry_after_secs>` and OpenAI's rate-limit error body.
    RateLimited {
        /// The `Retry-After` header's value, in seconds.
        retry_after_secs: u64,
    },
    /// 500 with OpenAI's server-error body.
    ServerError,
    /// 200 with `content: null` and a `refusal`, as structured outputs report a refusal.
    Refusal,
    /// 200 whose message content is exactly this string: for answers the keyword policy
    /// never gives (a category outside the list, an index out of range or repeated).
    Content(String),
}

struct State {
    mode: LlmMode,
    keywords: Vec<(String, String)>,
    requests: Vec<Value>,
    calls: usize,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock must not hide the next assertion behind
    // a poison error: the state is plain data and stays usable.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running stand-in; stops when dropped.
pub struct LlmStandIn {
    addr: SocketAddr,
    state: Shared,
    task: JoinHandle<()>,
}

impl Drop for LlmStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LlmStandIn {
    /// Listens on a free loopback port, in [`LlmMode::Answer`] with no keywords (every
    /// transaction gets `null`).
    pub async fn start() -> std::io::Result<LlmStandIn> {
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
        let addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .ok_or_else(|| std::io::Error::other("the listener has no TCP address"))?;
        let state: Shared = Arc::new(Mutex::new(State {
            mode: LlmMode::Answer,
            keywords: Vec::new(),
            requests: Vec::new(),
            calls: 0,
        }));
        let app = Route::new()
            .at("/v1/chat/completions", post(chat_completions))
            .data(state.clone());
        let task = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
        });
        Ok(LlmStandIn { addr, state, task })
    }

    /// `http://127.0.0.1:<port>/v1`, the form `BALANCE_LLM_BASE_URL` takes (the client adds
    /// `/chat/completions`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// How the next requests are answered.
    pub fn set_mode(&self, mode: LlmMode) {
        lock(&self.state).mode = mode;
    }

    /// The answer policy in [`LlmMode::Answer`]: for each transaction, the first
    /// `(keyword, category)` pair whose keyword appears (case-insensitive) in the merchant
    /// or the description gives the category, with confidence 0.9; otherwise the category
    /// is `null` with 0.2. A category that is not among the request's categories becomes
    /// `null`, as a schema-bound model could not name it.
    pub fn answer_with(&self, keywords: Vec<(String, String)>) {
        lock(&self.state).keywords = keywords;
    }

    /// Every request body received (parsed JSON), oldest first, for tests that check what
    /// was sent.
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.state).requests.clone()
    }

    /// How many requests reached the endpoint, whatever they were answered.
    pub fn calls(&self) -> usize {
        lock(&self.state).calls
    }
}

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
fn error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response {
    let body = json!({
        "error": { "message": message, "type": kind, "param": null, "code": code }
    });
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

#[handler]
async fn chat_completions(req: &Request, body: Vec<u8>, state: Data<&Shared>) -> Response {
    lock(&state).calls += 1;

    let bearer = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|key| !key.trim().is_empty());
    if !bearer {
        return error(
            StatusCode::UNAUTHORIZED,
            "You didn't provide an API key. You need to provide your API key in an \
             Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
            None,
        );
    }

    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request.",
            "invalid_request_error",
            None,
        );
    };
    let (mode, keywords) = {
        let mut state = lock(&state);
        state.requests.push(request.clone());
        (state.mode.clone(), state.keywords.clone())
    };
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("testkit")
        .to_string();

    match mode {
        LlmMode::Answer => answer(&request, &model, &keywords),
        LlmMode::Slow(pause) => {
            tokio::time::sleep(pause).await;
            answer(&request, &model, &keywords)
        }
        LlmMode::Malformed => completion(
            &model,
            json!("Sure! Here are the categories you asked for: groceries, rent"),
            Value::Null,
        ),
        LlmMode::Content(content) => completion(&model, json!(content), Value::Null),
        LlmMode::Refusal => completion(
            &model,
            Value::Null,
            json!("I'm sorry, but I can't help with that request."),
        ),
        LlmMode::RateLimited { retry_after_secs } => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "Rate limit reached for {model} in organization org-testkit on requests \
                     per min (RPM): Limit 3, Used 3, Requested 1. Please try again in \
                     {retry_after_secs}s."
                ),
                "requests",
                Some("rate_limit_exceeded"),
            );
            if let Ok(value) = retry_after_secs.to_string().parse() {
                response.headers_mut().insert("retry-after", value);
            }
            response
        }
        LlmMode::ServerError => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ),
    }
}

/// Answers by the keyword policy; a request whose user message is not the categorization
/// JSON is a client bug, answered 400 as OpenAI answers a bad request.
fn answer(request: &Value, model: &str, keywords: &[(String, String)]) -> Response {
    let Some(input) = user_payload(request) else {
        return error(
            StatusCode::BAD_REQUEST,
            "The user message's content is not the JSON the stand-in expects \
             ({categories: [...], transactions: [...]}).",
            "invalid_request_error",
            None,
        );
    };
    let categories: Vec<&str> = input
        .get("categories")
        .and_then(Value::as_array)
        .map(|c| c.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let transactions = input
        .get("transactions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();

    let answers: Vec<Value> = transactions
        .iter()
        .map(|t| {
            let text = |key: &str| {
                t.get(key)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_lowercase()
            };
            let (merchant, description) = (text("merchant"), text("description"));
            let hit = keywords.iter().find(|(keyword, _)| {
                let keyword = keyword.to_lowercase();
                merchant.contains(&keyword) || description.contains(&keyword)
            });
            let (category, confidence, reason) = match hit {
                Some((keyword, category)) if categories.contains(&category.as_str()) => (
                    json!(category),
                    0.9,
                    format!("the text mentions \"{keyword}\""),
                ),
                Some((keyword, _)) => (
                    Value::Null,
                    0.2,
                    format!("\"{keyword}\" matched, but its category was not offered"),
                ),
                None => (Value::Null, 0.2, "no keyword matched".to_string()),
            };
            json!({
                "i": t.get("i").cloned().unwrap_or(Value::Null),
                "category": category,
                "confidence": confidence,
                "reason": reason,
            })
        })
        .collect();
    let content = json!({ "answers": answers }).to_string();
    completion(model, json!(content), Value::Null)
}

/// The user message's content, parsed: the categories and transactions the client sent.
fn user_payload(request: &Value) -> Option<Value> {
    request
        .get("messages")?
        .as_array()?
        .iter()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?
        .get("content")?
        .as_str()
        .and_then(|content| serde_json::from_str(content).ok())
}

/// A `chat.completion` object with one choice, as OpenAI returns it.
fn completion(model: &str, content: Value, refusal: Value) -> Response {
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Rough token counts (about four bytes a token) so `usage` has plausible numbers.
    let completion_tokens = content.as_str().or(refusal.as_str()).map_or(0, str::len) / 4 + 1;
    let body = json!({
        "id": format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content, "refusal": refusal },
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": completion_tokens,
            "total_tokens": 100 + completion_tokens,
        },
        "system_fingerprint": "fp_testkit",
    });
    Response::builder()
        .content_type("application/json")
        .body(body.to_string())
}
