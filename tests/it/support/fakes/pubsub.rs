//! Pub/Sub v1 fake: `projects.topics.publish` (`POST /v1/projects/P/topics/T:publish`) for the
//! topics it knows; an unknown topic answers 404 `NOT_FOUND` as the real API does. Every message
//! is kept, its `data` decoded from base64, and answered with its `messageIds`.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::google::error;

/// One published message.
#[derive(Clone, Debug)]
pub struct Published {
    /// `projects/P/topics/T`.
    pub topic: String,
    /// `attributes`.
    pub attributes: Value,
    /// `data`, decoded and parsed as JSON.
    pub data: Value,
}

/// The running fake.
pub struct PubSubFake {
    /// The server.
    pub server: MockServer,
    /// Every message published, in order.
    pub messages: Arc<Mutex<Vec<Published>>>,
}

struct Publish {
    topics: Vec<String>,
    messages: Arc<Mutex<Vec<Published>>>,
}

impl Respond for Publish {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let topic = request.url.path().trim_start_matches("/v1/").trim_end_matches(":publish").to_owned();
        if !self.topics.contains(&topic) {
            return error(404, "NOT_FOUND", "Resource not found (resource=topic).", "NOT_FOUND");
        }
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.", "INVALID_ARGUMENT");
        };
        let mut ids = Vec::new();
        let mut messages = self.messages.lock().unwrap();
        for m in body["messages"].as_array().into_iter().flatten() {
            let data = m["data"]
                .as_str()
                .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
                .and_then(|d| serde_json::from_slice(&d).ok())
                .unwrap_or(Value::Null);
            messages.push(Published { topic: topic.clone(), attributes: m["attributes"].clone(), data });
            ids.push((messages.len() as u64 + 1000).to_string());
        }
        if ids.is_empty() {
            return error(400, "INVALID_ARGUMENT", "The request contains no messages.", "INVALID_ARGUMENT");
        }
        ResponseTemplate::new(200).set_body_json(json!({"messageIds": ids}))
    }
}

impl PubSubFake {
    /// Starts the fake with these topics (`projects/P/topics/T`).
    pub async fn start(topics: &[&str]) -> Self {
        let server = MockServer::start().await;
        let messages = Arc::new(Mutex::new(Vec::new()));
        Mock::given(method("POST"))
            .and(path_regex(r"^/v1/projects/[^/]+/topics/[^/]+:publish$"))
            .respond_with(Publish {
                topics: topics.iter().map(|t| (*t).to_owned()).collect(),
                messages: messages.clone(),
            })
            .mount(&server)
            .await;
        Self { server, messages }
    }

    /// Messages published so far whose `kind` attribute is `kind`.
    pub fn of_kind(&self, kind: &str) -> Vec<Published> {
        self.messages.lock().unwrap().iter().filter(|m| m.attributes["kind"] == kind).cloned().collect()
    }
}
