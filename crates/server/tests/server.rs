//! The real server on a free loopback port with the tiny chat model and
//! the real encoder, driven over HTTP: the OpenAI routes, streaming,
//! concurrent requests batched, the personal flow with two users from the
//! shared data, every bad input with its status and nothing stored, a
//! client that disconnects mid-stream, the API key and the loading state.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use persona_agent::Runtime;
use persona_engine::{BertEncoder, Device, GgufChatModel};
use persona_memory::Memory;
use persona_server::{Limits, Loader, Server, ServerConfig};
use persona_testkit::{model_path, shared_data};
use serde_json::{json, Value};

const BODY_LIMIT: usize = 256 << 10;

/// Starts a server on a free port in a thread of its own; returns its address.
fn start(config: ServerConfig, loader: Loader) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let server = Server::bind(config).await.unwrap();
            tx.send(server.local_addr().unwrap()).unwrap();
            let _ = server.run(loader, std::future::pending()).await;
        });
    });
    rx.recv().unwrap()
}

fn config() -> ServerConfig {
    ServerConfig {
        port: 0,
        model_name: "tiny".into(),
        limits: Limits { parallel: 4, queue: 4, max_body_bytes: BODY_LIMIT, align_jobs: 1 },
        ..ServerConfig::default()
    }
}

/// The shared server with the tiny model (loaded once for every test).
fn server() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let data = tempfile::tempdir().unwrap().keep();
        let loader: Loader = Box::new(move || {
            let model = GgufChatModel::load(model_path("tiny"), &Device::Cpu).map_err(|e| e.to_string())?;
            let encoder = BertEncoder::load(model_path("minilm").parent().unwrap(), "minilm", &Device::Cpu).map_err(|e| e.to_string())?;
            let memory = Memory::open(&data).map_err(|e| e.to_string())?;
            Ok(Runtime::new(model, std::sync::Arc::new(encoder), memory, None))
        });
        let url = format!("http://{}", start(config(), loader));
        let deadline = Instant::now() + Duration::from_secs(120);
        while get(&url, "/health").0 != 200 {
            assert!(Instant::now() < deadline, "the server did not get ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        url
    })
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(300)).build()
}

fn read(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let response = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn get(url: &str, path: &str) -> (u16, Value) {
    read(agent().get(&format!("{url}{path}")).call())
}

fn post(url: &str, path: &str, body: &Value) -> (u16, Value) {
    read(agent().post(&format!("{url}{path}")).send_json(body.clone()))
}

fn post_as(url: &str, user: &str, body: &Value) -> (u16, Value) {
    read(agent().post(&format!("{url}/v1/chat/completions")).set("X-User-Id", user).send_json(body.clone()))
}

fn chat(question: &str, max_tokens: usize) -> Value {
    json!({"model": "tiny", "messages": [{"role": "user", "content": question}], "max_tokens": max_tokens, "temperature": 0, "seed": 1})
}

fn content(v: &Value) -> String {
    v["choices"][0]["message"]["content"].as_str().unwrap().to_string()
}

#[test]
fn models_health_and_a_chat() {
    let url = server();
    let (status, models) = get(url, "/v1/models");
    assert_eq!(status, 200);
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["tiny", "persona-agent"]);
    let (status, reply) = post(url, "/v1/chat/completions", &chat("What is the capital of France?", 12));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["object"], "chat.completion");
    assert!(!content(&reply).is_empty());
    let usage = &reply["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 5);
    assert!(usage["completion_tokens"].as_u64().unwrap() <= 12);
    assert_eq!(usage["total_tokens"].as_u64(), Some(usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()));
    assert!(reply.get("persona_context").is_none(), "no user, no personal context");
    let (_, metrics) = get(url, "/metrics");
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(metrics.contains("persona_tokens_decoded_total") && metrics.contains("persona_time_to_first_token_seconds_count"), "{metrics}");
}

/// Reads a server-sent event stream to its end: the `data:` payloads.
fn sse(url: &str, body: &Value) -> Vec<String> {
    let response = agent().post(&format!("{url}/v1/chat/completions")).send_json(body.clone()).unwrap();
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let mut out = Vec::new();
    for line in BufReader::new(response.into_reader()).lines() {
        let line = line.unwrap();
        if let Some(data) = line.strip_prefix("data: ") {
            out.push(data.to_string());
        }
    }
    out
}

#[test]
fn streaming_gives_the_same_text_with_usage_last() {
    let url = server();
    let mut body = chat("Name two colours of the rainbow.", 16);
    let (_, whole) = post(url, "/v1/chat/completions", &body);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let events = sse(url, &body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks.iter().filter_map(|c| c["choices"].get(0).and_then(|c| c["delta"]["content"].as_str())).collect();
    assert_eq!(text, content(&whole), "a stream carries the same text as a whole reply");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]), "the usage chunk has no choices");
    assert_eq!(usage["usage"]["completion_tokens"], whole["usage"]["completion_tokens"]);
    let finish = &chunks[chunks.len() - 2]["choices"][0];
    assert_eq!(finish["finish_reason"], whole["choices"][0]["finish_reason"]);
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]));
}

#[test]
fn concurrent_chats_are_batched_and_answer_as_alone() {
    let url = server();
    let questions = ["Why is the sea salty?", "Give one tip for sleeping well.", "What do bees make?", "Count from one to five."];
    let alone: Vec<String> = questions.iter().map(|q| content(&post(url, "/v1/chat/completions", &chat(q, 20)).1)).collect();
    let together: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = questions.iter().map(|q| s.spawn(move || content(&post(url, "/v1/chat/completions", &chat(q, 20)).1))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(alone, together, "greedy replies do not depend on the batch they ran in");
}

/// Records of one HuffPost author: (headline and description, category).
fn author_records(author: &str, n: usize) -> String {
    let text = std::fs::read_to_string(shared_data().join("news/huffpost_news_category_subset.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["authors"] == author)
        .take(n)
        .map(|v| json!({"query": format!("{}. {}", v["headline"].as_str().unwrap(), v["short_description"].as_str().unwrap()), "response": v["category"].as_str().unwrap().to_lowercase()}).to_string() + "\n")
        .collect()
}

/// Two authors with at least `n` articles each.
fn two_authors(n: usize) -> (String, String) {
    let text = std::fs::read_to_string(shared_data().join("news/huffpost_news_category_subset.jsonl")).unwrap();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for l in text.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        if let Some(a) = v["authors"].as_str().filter(|a| !a.is_empty() && !a.contains(',')) {
            *counts.entry(a.to_string()).or_default() += 1;
        }
    }
    let mut many: Vec<_> = counts.into_iter().filter(|(_, c)| *c >= n).map(|(a, _)| a).collect();
    assert!(many.len() >= 2, "two authors with {n} articles");
    let b = many.swap_remove(1);
    (many.swap_remove(0), b)
}

fn import(url: &str, user: &str, jsonl: &str) -> (u16, Value) {
    read(agent().post(&format!("{url}/v1/users/{user}/records")).set("content-type", "application/x-ndjson").send_string(jsonl))
}

fn record_ids(url: &str, user: &str) -> Vec<i64> {
    let (status, found) = get(url, &format!("/v1/users/{user}/records/search?q=news&k=100"));
    assert_eq!(status, 200, "{found}");
    found["data"].as_array().unwrap().iter().map(|h| h["id"].as_i64().unwrap()).collect()
}

#[test]
fn each_user_gets_their_own_persona_and_memory_and_delete_removes_everything() {
    let url = server();
    let (author_a, author_b) = two_authors(12);
    let (a, b) = ("reader-a", "reader-b");
    for (user, author) in [(a, &author_a), (b, &author_b)] {
        let (status, report) = import(url, user, &author_records(author, 12));
        assert_eq!(status, 201, "{report}");
        assert_eq!(report["added"], 12);
    }
    let (ids_a, ids_b) = (record_ids(url, a), record_ids(url, b));
    assert_eq!((ids_a.len(), ids_b.len()), (12, 12));
    let question = "Which news section would you file a story about a new vaccine under?";
    let mut body = chat(question, 8);
    let (status, reply_a) = post_as(url, a, &body);
    assert_eq!(status, 200, "{reply_a}");
    let (_, reply_b) = post_as(url, b, &body);
    for (reply, user, own, other) in [(&reply_a, a, &ids_a, &ids_b), (&reply_b, b, &ids_b, &ids_a)] {
        let ctx = &reply["persona_context"];
        assert_eq!(ctx["user"], user);
        let (_, persona) = get(url, &format!("/v1/users/{user}/persona"));
        assert_eq!(ctx["persona_version"], persona["version"], "the prompt carries the user's own persona");
        let used: Vec<i64> = ctx["records"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(used.len(), 4, "K = 4 records in the prompt");
        assert!(used.iter().all(|id| own.contains(id) && !other.contains(id)), "{user}'s prompt holds only their records: {used:?}");
    }
    let (_, pa) = get(url, &format!("/v1/users/{a}/persona"));
    let (_, pb) = get(url, &format!("/v1/users/{b}/persona"));
    assert_ne!(pa["text"], pb["text"], "two users, two personas");
    // The exchange was stored in the user's memory, once.
    let (_, found) = get(url, &format!("/v1/users/{a}/records/search?q={}&k=100", "vaccine%20news%20section"));
    let stored: Vec<&Value> = found["data"].as_array().unwrap().iter().filter(|h| h["metadata"]["completion_id"] == reply_a["id"]).collect();
    assert_eq!(stored.len(), 1, "{found}");
    assert_eq!(stored[0]["query"], question);
    // Feedback: the answer the user wanted becomes a record.
    let (status, fb) = post(url, &format!("/v1/users/{a}/feedback"), &json!({"completion_id": reply_a["id"], "response": "science"}));
    assert_eq!(status, 201, "{fb}");
    let (status, _) = post(url, &format!("/v1/users/{a}/feedback"), &json!({"completion_id": "chatcmpl-nope", "response": "x"}));
    assert_eq!(status, 404);
    // `store: false` keeps the exchange out of memory.
    body["store"] = json!(false);
    let before = record_ids(url, b).len();
    post_as(url, b, &body);
    assert_eq!(record_ids(url, b).len(), before);
    // Delete: everything of A's is gone; B is untouched.
    let (status, _) = read(agent().delete(&format!("{url}/v1/users/{a}")).call());
    assert_eq!(status, 200);
    assert_eq!(get(url, &format!("/v1/users/{a}/persona")).0, 404);
    assert_eq!(get(url, &format!("/v1/users/{a}/records/search?q=news")).0, 404);
    assert_eq!(record_ids(url, b).len(), before);
    // A comes back as a new user with nothing.
    let (_, again) = post_as(url, a, &chat(question, 4));
    assert_eq!(again["persona_context"]["persona_version"], Value::Null);
    assert_eq!(again["persona_context"]["records"], json!([]));
}

#[test]
fn bad_input_gets_its_status_and_stores_nothing() {
    let url = server();
    let user = "never-stored";
    let expect = |status: u16, body: Value, code: u16, needle: &str| {
        assert_eq!(status, code, "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle) || body["error"]["param"] == needle, "{body}");
        assert!(body["error"]["type"].is_string(), "{body}");
    };
    let (s, b) = read(
        agent().post(&format!("{url}/v1/chat/completions")).set("X-User-Id", user).set("content-type", "application/json").send_string("{\"messages\": [}"),
    );
    expect(s, b, 422, "malformed JSON");
    let (s, b) = post_as(url, user, &json!({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}));
    expect(s, b, 422, "temperature");
    let (s, b) = post_as(url, user, &json!({"messages": "hello"}));
    expect(s, b, 422, "messages");
    let (s, b) = post_as(url, user, &json!({"messages": []}));
    expect(s, b, 400, "messages");
    let (s, b) = post_as(url, user, &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}));
    expect(s, b, 404, "gpt-4o");
    let (s, b) = post_as(url, user, &json!({"messages": [{"role": "wizard", "content": "hi"}]}));
    expect(s, b, 400, "messages[0].role");
    let (s, b) = post_as(url, user, &json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}));
    expect(s, b, 400, "max_tokens");
    let long = "word ".repeat(40_000);
    let (s, b) = post_as(url, user, &json!({"messages": [{"role": "user", "content": long}], "max_tokens": 16}));
    expect(s, b.clone(), 400, "context");
    assert_eq!(b["error"]["code"], "context_length_exceeded");
    let message = b["error"]["message"].as_str().unwrap();
    assert!(message.contains("the prompt has 400") && message.contains("context of"), "the prompt's size and the context size: {message}");
    // A body over the limit is refused from its announced length, unread.
    let addr = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nX-User-Id: {user}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{",
        BODY_LIMIT + 10
    )
    .unwrap();
    let mut head = String::new();
    BufReader::new(&stream).read_line(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    let mut bad_user = chat("hi", 2);
    bad_user["user"] = json!("bell\u{7}");
    let (s, b) = post(url, "/v1/chat/completions", &bad_user);
    expect(s, b, 400, "user");
    let (s, b) = import(url, user, "{\"query\": \"q\"}\n");
    expect(s, b, 422, "response");
    let (s, b) = get(url, &format!("/v1/users/{user}/records/search?q=x&k=lots"));
    expect(s, b, 422, "k");
    let (s, b) = get(url, "/v1/users/nobody-here/persona");
    expect(s, b, 404, "nobody-here");
    let (s, b) = get(url, "/v1/no/such/route");
    expect(s, b, 404, "/v1/no/such/route");
    // None of it created the user or stored anything.
    let (s, _) = get(url, &format!("/v1/users/{user}/records/search?q=hi"));
    assert_eq!(s, 404, "no user was created by a refused request");
}

#[test]
fn a_client_that_disconnects_mid_stream_frees_its_slot() {
    let url = server();
    let addr = url.trim_start_matches("http://");
    let cancelled = |url: &str| -> u64 {
        let text = get(url, "/metrics").1.as_str().unwrap().to_string();
        text.lines().find_map(|l| l.strip_prefix("persona_requests_cancelled_total ")).unwrap().trim().parse().unwrap()
    };
    let before = cancelled(url);
    let body =
        json!({"messages": [{"role": "user", "content": "Tell me a very long story about the sea."}], "max_tokens": 1500, "stream": true, "temperature": 0.7})
            .to_string();
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut seen = String::new();
    while !seen.contains("\"content\"") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(20);
    while cancelled(url) == before {
        assert!(Instant::now() < deadline, "the disconnected request kept its slot");
        std::thread::sleep(Duration::from_millis(50));
    }
    let running = get(url, "/metrics").1.as_str().unwrap().lines().find_map(|l| l.strip_prefix("persona_requests_running ").map(str::to_string)).unwrap();
    assert!(running.trim().parse::<usize>().unwrap() < 4, "{running}");
}

#[test]
fn health_waits_for_loading_and_the_key_is_required() {
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let loader: Loader = Box::new(move || {
        let _ = wait.recv();
        Err("stopped by the test".into())
    });
    let config = ServerConfig { api_key: Some("s3cret".into()), ..config() };
    let url = format!("http://{}", start(config, loader));
    let (status, body) = get(&url, "/health");
    assert_eq!((status, body["status"].as_str()), (503, Some("loading")));
    let (status, body) = get(&url, "/v1/models");
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["type"], "authentication_error");
    let wrong = read(agent().get(&format!("{url}/v1/models")).set("Authorization", "Bearer s3creT").call());
    assert_eq!(wrong.0, 401);
    let (status, body) = read(agent().post(&format!("{url}/v1/chat/completions")).set("Authorization", "Bearer s3cret").send_json(chat("hi", 2)));
    assert_eq!(status, 503, "a right key while loading: {body}");
    let (status, _) = read(agent().get(&format!("{url}/v1/models")).set("Authorization", "Bearer s3cret").call());
    assert_eq!(status, 200);
    go.send(()).unwrap();
}

#[test]
fn json_mode_and_json_schema_write_what_they_ask_for() {
    let url = server();
    let mut body = chat("Describe a cat as JSON with the keys name and age.", 120);
    body["response_format"] = json!({"type": "json_object"});
    let (status, reply) = post(url, "/v1/chat/completions", &body);
    assert_eq!(status, 200, "{reply}");
    let text = content(&reply);
    let parsed: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert!(parsed.is_object(), "{text}");
    assert_eq!(reply["choices"][0]["finish_reason"], "stop", "the object closed before the limit");
    // A schema: its properties in declared order (not alphabetical), typed,
    // an enum that decides the label.
    let schema = r#"{"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
        "mood": {"enum": ["happy", "hungry", "sleepy"]}, "toys": {"type": "array", "items": {"type": "string"}, "maxItems": 2}},
        "required": ["name", "age", "mood", "toys"], "additionalProperties": false}"#;
    // Sent as written: a `Value` would sort the properties.
    body["max_tokens"] = json!(200);
    body.as_object_mut().unwrap().remove("response_format");
    let text = body.to_string();
    let raw =
        format!(r#"{},"response_format":{{"type":"json_schema","json_schema":{{"name":"cat","strict":true,"schema":{schema}}}}}}}"#, &text[..text.len() - 1]);
    let (status, reply) = read(agent().post(&format!("{url}/v1/chat/completions")).set("Content-Type", "application/json").send_string(&raw));
    assert_eq!(status, 200, "{reply}");
    let text = content(&reply);
    assert!(text.starts_with(r#"{"name":""#), "declared order, compact: {text}");
    if reply["choices"][0]["finish_reason"] == "stop" {
        let parsed: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        assert!(
            parsed["age"].is_i64()
                && ["happy", "hungry", "sleepy"].contains(&parsed["mood"].as_str().unwrap())
                && parsed["toys"].as_array().unwrap().len() <= 2,
            "{text}"
        );
        let keys: Vec<&str> = text.match_indices("\":").map(|(i, _)| text[..i].rsplit('"').next().unwrap()).collect();
        assert_eq!(keys, ["name", "age", "mood", "toys"], "{text}");
    }
    // A schema that cannot be enforced is a 400 naming where, never ignored.
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "cat", "schema": {"type": "object", "properties": {"name": {"type": "string", "pattern": "^[A-Z]"}}}}});
    let (status, reply) = post(url, "/v1/chat/completions", &body);
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["error"]["param"], "response_format.json_schema.schema");
    assert!(reply["error"]["message"].as_str().unwrap().contains("#/properties/name: the keyword `pattern`"), "{reply}");
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "cat", "schema": {"type": "string"}}});
    assert_eq!(post(url, "/v1/chat/completions", &body).0, 400, "the root must be an object");
}

#[test]
fn alignment_runs_as_a_background_job() {
    let url = server();
    let (author, _) = two_authors(12);
    let user = "aligned-reader";
    assert_eq!(import(url, user, &author_records(&author, 12)).0, 201);
    let (status, job) = post(url, &format!("/v1/users/{user}/align"), &json!({"batch": 1, "iterations": 1}));
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(600);
    // The job runs on a thread of its own: a chat meanwhile is answered
    // while the job still runs (its calls share the batch, they do not
    // hold it). On the engine thread, the chat would wait for the job.
    loop {
        let state = get(url, &format!("/v1/jobs/{id}")).1;
        if state["status"] == "running" {
            break;
        }
        assert!(state["status"] == "queued" && Instant::now() < deadline, "{state}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, reply) = post(url, "/v1/chat/completions", &chat("Say hi.", 2));
    assert_eq!(status, 200, "{reply}");
    let meanwhile = get(url, &format!("/v1/jobs/{id}")).1;
    assert_eq!(meanwhile["status"], "running", "the chat waited for the alignment job: {meanwhile}");
    // One job per user at a time; one job runs at once (`align_jobs: 1`),
    // the next waits its turn; a queued job whose user is deleted fails.
    let (status, again) = post(url, &format!("/v1/users/{user}/align"), &json!({}));
    assert_eq!((status, &again["error"]["code"]), (409, &json!("job_in_progress")), "{again}");
    assert!(again["error"]["message"].as_str().unwrap().contains(&id), "{again}");
    let other = "aligned-reader-two";
    assert_eq!(import(url, other, &author_records(&author, 6)).0, 201);
    let (status, waiting) = post(url, &format!("/v1/users/{other}/align"), &json!({"batch": 1, "iterations": 1}));
    assert_eq!((status, &waiting["status"]), (202, &json!("queued")), "{waiting}");
    let waiting = waiting["id"].as_str().unwrap().to_string();
    assert_eq!(get(url, &format!("/v1/jobs/{id}")).1["status"], "running");
    assert_eq!(get(url, &format!("/v1/jobs/{waiting}")).1["status"], "queued", "a second job ran beside the first");
    assert_eq!(read(agent().delete(&format!("{url}/v1/users/{other}")).call()).0, 200);
    let done = loop {
        let (status, state) = get(url, &format!("/v1/jobs/{id}"));
        assert_eq!(status, 200);
        if state["status"] == "succeeded" || state["status"] == "failed" {
            break state;
        }
        assert!(Instant::now() < deadline, "the job did not finish: {state}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["iterations"], 1, "{done}");
    let failed = loop {
        let state = get(url, &format!("/v1/jobs/{waiting}")).1;
        if state["status"] != "queued" && state["status"] != "running" {
            break state;
        }
        assert!(Instant::now() < deadline, "the queued job did not end: {state}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["error"].as_str().unwrap().contains(other), "{failed}");
    let (_, history) = get(url, &format!("/v1/users/{user}/persona?history=true"));
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.last().unwrap()["version"], done["result"]["final_version"], "{history}");
    assert_eq!(post(url, "/v1/users/nobody-at-all/align", &json!({})).0, 404);
    assert_eq!(post(url, &format!("/v1/users/{user}/align"), &json!({"iterations": "many"})).0, 422);
    assert_eq!(post(url, &format!("/v1/users/{user}/align"), &json!({"iterations": 0})).0, 400);
    assert_eq!(get(url, "/v1/jobs/align-0").0, 404);
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    // One place to run and none to wait: a second chat while a long one
    // streams is refused at once, and served again once the first ends.
    let data = tempfile::tempdir().unwrap().keep();
    let loader: Loader = Box::new(move || {
        let model = GgufChatModel::load(model_path("tiny"), &Device::Cpu).map_err(|e| e.to_string())?;
        let encoder = BertEncoder::load(model_path("minilm").parent().unwrap(), "minilm", &Device::Cpu).map_err(|e| e.to_string())?;
        Ok(Runtime::new(model, std::sync::Arc::new(encoder), Memory::open(&data).map_err(|e| e.to_string())?, None))
    });
    let config = ServerConfig { limits: Limits { parallel: 1, queue: 0, max_body_bytes: BODY_LIMIT, align_jobs: 1 }, ..config() };
    let url = format!("http://{}", start(config, loader));
    let deadline = Instant::now() + Duration::from_secs(120);
    while get(&url, "/health").0 != 200 {
        assert!(Instant::now() < deadline, "the server did not get ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let addr = url.trim_start_matches("http://").to_string();
    let body =
        json!({"messages": [{"role": "user", "content": "Tell me a very long story about the sea."}], "max_tokens": 400, "stream": true, "temperature": 0.7})
            .to_string();
    let mut stream = TcpStream::connect(&addr).unwrap();
    write!(stream, "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut seen = String::new();
    while !seen.contains("\"content\"") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let refused = match agent().post(&format!("{url}/v1/chat/completions")).send_json(chat("hi", 2)) {
        Err(ureq::Error::Status(503, r)) => r,
        other => panic!("expected 503, got {:?}", other.map(|r| r.status())),
    };
    assert_eq!(refused.header("retry-after"), Some("1"));
    let body: Value = serde_json::from_str(&refused.into_string().unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    drop(stream);
    // The disconnected stream gives its place back.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, reply) = post(&url, "/v1/chat/completions", &chat("hi", 2));
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{reply}");
        assert!(Instant::now() < deadline, "the place was never given back");
        std::thread::sleep(Duration::from_millis(100));
    }
}
