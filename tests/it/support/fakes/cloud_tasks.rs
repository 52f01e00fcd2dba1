//! Cloud Tasks v2 fake: `POST /v2/{queue}/tasks` records the task and answers it; a repeated
//! task name answers 409 `ALREADY_EXISTS`. `httpMethod` is accepted as an integer (what the SDK
//! sends) or a string. [`CloudTasksFake::deliver_all`] plays Cloud Tasks: it POSTs every recorded
//! task to its URL with its body and Cloud Tasks' `X-CloudTasks-*` headers. `GET /v2/{queue}`
//! (`queues.get`) answers the queues added with [`CloudTasksFake::add_queue`], 404 otherwise.
//! `scheduleTime` is honoured by [`CloudTasksFake::deliver_next`]: the next task due (earliest
//! `scheduleTime` first) is delivered no sooner than its time (or, for a test in a hurry, at most
//! a given while early); a 2xx answer completes it, anything else retries it (its
//! `X-CloudTasks-TaskRetryCount` grows), as Cloud Tasks does.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::google::{ApiState, error};

/// One recorded task.
#[derive(Clone, Debug)]
pub struct RecordedTask {
    /// `projects/P/locations/L/queues/Q`.
    pub queue: String,
    /// Full task name.
    pub name: String,
    /// The task JSON as sent.
    pub task: Value,
    /// The decoded HTTP body.
    pub body: Value,
    /// `scheduleTime`, when the task has one.
    pub schedule_time: Option<chrono::DateTime<chrono::Utc>>,
    /// Deliveries answered so far (the next one's `X-CloudTasks-TaskRetryCount`).
    pub attempts: u32,
    /// Completed (answered 2xx).
    pub done: bool,
}

/// One delivery of [`CloudTasksFake::deliver_next`].
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The task's short name.
    pub name: String,
    /// The answer's status code.
    pub status: u16,
    /// The answer's body.
    pub body: Value,
}

/// The running fake.
pub struct CloudTasksFake {
    /// The server.
    pub server: MockServer,
    /// Counters and 429 bursts.
    pub api: Arc<ApiState>,
    /// Every task created, in order.
    pub tasks: Arc<Mutex<Vec<RecordedTask>>>,
    /// Queues `queues.get` knows, by name.
    pub queues: Arc<Mutex<std::collections::BTreeMap<String, Value>>>,
    /// createTask calls answered 409 `ALREADY_EXISTS`.
    pub duplicates: Arc<std::sync::atomic::AtomicU64>,
}

struct GetQueue(Arc<Mutex<std::collections::BTreeMap<String, Value>>>);

impl Respond for GetQueue {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let name = request.url.path().trim_start_matches("/v2/");
        match self.0.lock().unwrap().get(name) {
            Some(queue) => ResponseTemplate::new(200).set_body_json(queue),
            None => error(404, "NOT_FOUND", &format!("Queue does not exist. {name}"), "NOT_FOUND"),
        }
    }
}

struct Create(Arc<ApiState>, Arc<Mutex<Vec<RecordedTask>>>, Arc<std::sync::atomic::AtomicU64>);

/// Standard base64 (Google's JSON `bytes`), decoded.
pub fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'-' => Some(62),
            b'_' => Some(63),
            _ => ALPHABET.iter().position(|a| *a == c),
        };
        let Some(v) = v else { continue };
        acc = (acc << 6) | u32::try_from(v).unwrap();
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).unwrap());
        }
    }
    out
}

impl Respond for Create {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(r) = self.0.enter(request) {
            return r;
        }
        let queue = request.url.path().trim_start_matches("/v2/").trim_end_matches("/tasks").to_owned();
        let Ok(req) = serde_json::from_slice::<Value>(&request.body) else {
            return error(400, "INVALID_ARGUMENT", "body is not JSON", "BAD_REQUEST");
        };
        let task = req["task"].clone();
        let name = task["name"].as_str().unwrap_or_default().to_owned();
        let http = &task["httpRequest"];
        let method_ok = http["httpMethod"] == json!(1) || http["httpMethod"] == json!("POST");
        if !name.starts_with(&format!("{queue}/tasks/")) || !method_ok || http["url"].as_str().is_none() {
            return error(400, "INVALID_ARGUMENT", &format!("invalid task {task}"), "BAD_REQUEST");
        }
        let mut tasks = self.1.lock().unwrap();
        if tasks.iter().any(|t| t.name == name) {
            self.2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return error(409, "ALREADY_EXISTS", "Requested entity already exists", "ALREADY_EXISTS");
        }
        let body =
            serde_json::from_slice(&base64_decode(http["body"].as_str().unwrap_or_default())).unwrap_or(Value::Null);
        let schedule_time = task["scheduleTime"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        tasks.push(RecordedTask { queue, name, task: task.clone(), body, schedule_time, attempts: 0, done: false });
        let mut answer = task;
        answer["createTime"] = json!("2026-11-22T03:00:00Z");
        answer["dispatchCount"] = json!(0);
        ResponseTemplate::new(200).set_body_json(answer)
    }
}

impl CloudTasksFake {
    /// Starts the fake.
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let api = Arc::new(ApiState::default());
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let duplicates = Arc::new(std::sync::atomic::AtomicU64::new(0));
        Mock::given(method("POST"))
            .and(path_regex(r"^/v2/projects/[^/]+/locations/[^/]+/queues/[^/]+/tasks$"))
            .respond_with(Create(api.clone(), tasks.clone(), duplicates.clone()))
            .mount(&server)
            .await;
        let queues = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
        Mock::given(method("GET"))
            .and(path_regex(r"^/v2/projects/[^/]+/locations/[^/]+/queues/[^/]+$"))
            .respond_with(GetQueue(queues.clone()))
            .mount(&server)
            .await;
        Self { server, api, tasks, queues, duplicates }
    }

    /// Adds a queue whose retry configuration has `max_attempts` (-1: unlimited) and
    /// `max_retry_duration` (`"3600s"`).
    pub fn add_queue(&self, name: &str, max_attempts: i32, max_retry_duration: &str) {
        let queue = json!({
            "name": name,
            "state": "RUNNING",
            "rateLimits": {"maxDispatchesPerSecond": 5.0, "maxConcurrentDispatches": 20},
            "retryConfig": {"maxAttempts": max_attempts, "maxRetryDuration": max_retry_duration, "minBackoff": "10s", "maxBackoff": "300s", "maxDoublings": 4},
        });
        self.queues.lock().unwrap().insert(name.to_owned(), queue);
    }

    /// The recorded tasks.
    pub fn recorded(&self) -> Vec<RecordedTask> {
        self.tasks.lock().unwrap().clone()
    }

    /// Delivers the task due next (earliest `scheduleTime`, then oldest), waiting until its time
    /// but at most `early` (a test need not wait out a simulated schedule), like
    /// [`CloudTasksFake::deliver_all`] does; `None` when every task is done. A non-2xx answer
    /// leaves the task to be retried a second later.
    pub async fn deliver_next(
        &self,
        client: &reqwest::Client,
        origin: &str,
        early: std::time::Duration,
    ) -> Option<Delivery> {
        let (index, t) = {
            let tasks = self.tasks.lock().unwrap();
            let (index, t) = tasks
                .iter()
                .enumerate()
                .filter(|(_, t)| !t.done)
                .min_by_key(|(i, t)| (t.schedule_time.unwrap_or_default(), *i))?;
            (index, t.clone())
        };
        if let Some(due) = t.schedule_time {
            let wait = (due - chrono::Utc::now()).to_std().unwrap_or_default().min(early);
            tokio::time::sleep(wait).await;
        }
        let (status, body) = self.deliver_one(client, Some(origin), &t).await;
        let mut tasks = self.tasks.lock().unwrap();
        let recorded = &mut tasks[index];
        recorded.attempts += 1;
        if (200..300).contains(&status) {
            recorded.done = true;
        } else {
            recorded.schedule_time = Some(chrono::Utc::now() + chrono::Duration::seconds(1));
        }
        Some(Delivery { name: t.name.rsplit('/').next().unwrap_or_default().to_owned(), status, body })
    }

    /// Delivers the task named `short` (done or not) once more, as a duplicate delivery.
    pub async fn deliver_again(&self, client: &reqwest::Client, origin: &str, short: &str) -> Delivery {
        let t = self
            .recorded()
            .into_iter()
            .find(|t| t.name.rsplit('/').next() == Some(short))
            .unwrap_or_else(|| panic!("no task {short}"));
        let (status, body) = self.deliver_one(client, Some(origin), &t).await;
        Delivery { name: short.to_owned(), status, body }
    }

    async fn deliver_one(&self, client: &reqwest::Client, origin: Option<&str>, t: &RecordedTask) -> (u16, Value) {
        let http = &t.task["httpRequest"];
        let short = t.name.rsplit('/').next().unwrap_or_default().to_owned();
        let mut url = url::Url::parse(http["url"].as_str().unwrap()).expect("task URL");
        if let Some(origin) = origin {
            let o = url::Url::parse(origin).expect("origin");
            url.set_scheme(o.scheme()).unwrap();
            url.set_host(o.host_str()).unwrap();
            url.set_port(o.port()).unwrap();
        }
        let mut req = client
            .post(url)
            .body(base64_decode(http["body"].as_str().unwrap_or_default()))
            .header("X-CloudTasks-QueueName", t.queue.rsplit('/').next().unwrap_or_default())
            .header("X-CloudTasks-TaskName", &short)
            .header("X-CloudTasks-TaskRetryCount", t.attempts.to_string())
            .header("X-CloudTasks-TaskExecutionCount", t.attempts.to_string())
            .header("X-CloudTasks-TaskETA", "1763780400.0")
            .header("User-Agent", "Google-Cloud-Tasks");
        for (k, v) in http["headers"].as_object().into_iter().flatten() {
            req = req.header(k.as_str(), v.as_str().unwrap_or_default());
        }
        let r = req.send().await.expect("delivery");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Delivers every recorded task like Cloud Tasks does (first attempt), to its URL or, with
    /// `origin`, to the same path on `origin` (the test service's port is known only once it runs);
    /// answers each task's short name, status code and body.
    pub async fn deliver_all(&self, client: &reqwest::Client, origin: Option<&str>) -> Vec<(String, u16, Value)> {
        let mut out = Vec::new();
        for t in self.recorded() {
            let http = &t.task["httpRequest"];
            let short = t.name.rsplit('/').next().unwrap_or_default().to_owned();
            let mut url = url::Url::parse(http["url"].as_str().unwrap()).expect("task URL");
            if let Some(origin) = origin {
                let o = url::Url::parse(origin).expect("origin");
                url.set_scheme(o.scheme()).unwrap();
                url.set_host(o.host_str()).unwrap();
                url.set_port(o.port()).unwrap();
            }
            let mut req = client
                .post(url)
                .body(base64_decode(http["body"].as_str().unwrap_or_default()))
                .header("X-CloudTasks-QueueName", t.queue.rsplit('/').next().unwrap_or_default())
                .header("X-CloudTasks-TaskName", &short)
                .header("X-CloudTasks-TaskRetryCount", "0")
                .header("X-CloudTasks-TaskExecutionCount", "0")
                .header("X-CloudTasks-TaskETA", "1763780400.0")
                .header("User-Agent", "Google-Cloud-Tasks");
            for (k, v) in http["headers"].as_object().into_iter().flatten() {
                req = req.header(k.as_str(), v.as_str().unwrap_or_default());
            }
            let r = req.send().await.expect("delivery");
            let status = r.status().as_u16();
            let body = r.json().await.unwrap_or(Value::Null);
            out.push((short, status, body));
        }
        out
    }
}
