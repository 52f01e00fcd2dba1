//! bench/night: one simulated night of Cloud SQL exports through Cloud Tasks, today's 503 polling
//! beside follow-up tasks (ADR 0021), in the same run and over the same drawn night.
//!
//! `cargo run --example night [-- --instances 300 --databases 5 --seed 7 …]`
//!
//! The night: `instances` × `databases` exports whose durations are drawn uniformly from
//! `min-minutes`–`max-minutes`; each database's previous backup took its duration × U(0.85, 1.2)
//! (what the follow-up policy expects). Cloud SQL runs one operation per instance (another start
//! answers 409). Tasks are enqueued at t = 0, an instance's `stagger` seconds apart (the queue's
//! `stagger_secs`). Every API call or manifest costs 1 s of request time.
//!
//! Cloud Tasks, modelled on its documented behaviour: at most `max-concurrent` dispatches in
//! flight and `rate` dispatches per second; a non-2xx answer is retried after the queue's backoff
//! (`min_backoff` doubled `max_doublings` times, then growing linearly, up to `max_backoff`); and a
//! 503 (or 429) answer applies system throttling to the **whole queue**: its dispatch rate halves
//! (down to 1/20 of the configured one) and recovers by 1/20 of it with every 2xx answer.
//!
//! Today ("503 polling"): a delivery starts or attaches and waits up to `wait` seconds for its
//! operation; still running, or the instance busy → 503. Follow-ups: a delivery starts, attaches
//! or finds the instance busy, creates a follow-up task at the time the real
//! `FollowUpPolicy::next_check` computes (settings defaults), and answers 200 at once.
//!
//! `--throttling off` leaves system throttling out (what polling costs without it).
//!
//! Reported for each: the makespan (last manifest), its ratio to the per-instance serial floor
//! (the longest instance's sum of exports, plus the stagger of its last task), the 503 answers,
//! Cloud SQL's 409 answers, dispatches, request-seconds spent waiting on an operation, and Cloud
//! Run instance-seconds (∑ ⌈requests in flight ÷ `concurrency`⌉ over time).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use data_backup::export::follow_up::{FollowUpPolicy, NextCheck};
use data_backup::settings::ExportSettings;

/// Milliseconds of simulated time.
type Ms = u64;

const SEC: Ms = 1000;

#[derive(Clone, Debug)]
struct Config {
    instances: usize,
    databases: usize,
    min_minutes: f64,
    max_minutes: f64,
    seed: u64,
    stagger: Ms,
    rate: f64,
    max_concurrent: usize,
    min_backoff: Ms,
    max_backoff: Ms,
    max_doublings: u32,
    wait: Ms,
    concurrency: usize,
    throttling: bool,
}

impl Default for Config {
    fn default() -> Self {
        // The Terraform module's defaults (task_max_dispatches_per_second = 1, …) and the service's.
        Self {
            instances: 300,
            databases: 5,
            min_minutes: 10.0,
            max_minutes: 40.0,
            seed: 7,
            stagger: 120 * SEC,
            rate: 1.0,
            max_concurrent: 10,
            min_backoff: 60 * SEC,
            max_backoff: 300 * SEC,
            max_doublings: 3,
            wait: 300 * SEC,
            concurrency: 20,
            throttling: true,
        }
    }
}

/// splitmix64: a reproducible night from `seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        #[expect(clippy::cast_precision_loss, reason = "53 bits of a uniform draw")]
        let x = (z >> 11) as f64 / (1u64 << 53) as f64;
        x
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}

/// One database of the night.
#[derive(Clone, Debug)]
struct Db {
    instance: usize,
    duration: Ms,
    expected: Ms,
}

/// Its export operation, once started.
#[derive(Clone, Copy, Debug)]
struct Op {
    db: usize,
    start: Ms,
    end: Ms,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Design {
    Polling,
    FollowUps,
}

#[derive(Clone, Copy, Debug)]
struct Task {
    db: usize,
    check: u32,
    retries: u32,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A request answers: frees its dispatch slot.
    Answer { id: usize, ok: bool, throttles: bool },
    /// A task becomes due.
    Due { id: usize },
    /// The dispatcher may dispatch again (its rate allows).
    Tick,
}

#[derive(Debug, Default)]
struct Outcome {
    makespan: Ms,
    answers_503: u64,
    answers_409: u64,
    dispatches: u64,
    waiting_request_secs: f64,
    instance_secs: f64,
    exhausted: u64,
    done: usize,
}

struct Sim<'a> {
    cfg: &'a Config,
    design: Design,
    dbs: &'a [Db],
    ops: Vec<Option<Op>>,
    /// Per instance: the operation running (its database), if any.
    busy: Vec<Option<usize>>,
    tasks: Vec<Task>,
    ready: BTreeMap<(Ms, usize), ()>,
    events: BinaryHeap<Reverse<(Ms, Event)>>,
    in_flight: usize,
    rate: f64,
    next_dispatch: Ms,
    done: Vec<bool>,
    out: Outcome,
    policy: FollowUpPolicy,
    /// (time, +1/-1) of requests starting and ending, for the instance-seconds.
    requests: Vec<(Ms, i64)>,
    now: Ms,
}

impl<'a> Sim<'a> {
    fn new(cfg: &'a Config, design: Design, dbs: &'a [Db]) -> Self {
        Self {
            cfg,
            design,
            dbs,
            ops: vec![None; dbs.len()],
            busy: vec![None; cfg.instances],
            tasks: Vec::new(),
            ready: BTreeMap::new(),
            events: BinaryHeap::new(),
            in_flight: 0,
            rate: cfg.rate,
            next_dispatch: 0,
            done: vec![false; dbs.len()],
            out: Outcome::default(),
            policy: FollowUpPolicy::from_settings(&ExportSettings::default()),
            requests: Vec::new(),
            now: 0,
        }
    }

    fn add_task(&mut self, task: Task, due: Ms) {
        let id = self.tasks.len();
        self.tasks.push(task);
        self.events.push(Reverse((due, Event::Due { id })));
    }

    /// The instance's operation, with finished ones cleared.
    fn running_on(&mut self, instance: usize, at: Ms) -> Option<Op> {
        let op = self.busy[instance].and_then(|db| self.ops[db])?;
        if op.end <= at {
            self.busy[instance] = None;
            return None;
        }
        Some(op)
    }

    fn run(mut self) -> Outcome {
        let mut per_instance = vec![0u64; self.cfg.instances];
        for db in 0..self.dbs.len() {
            let n = &mut per_instance[self.dbs[db].instance];
            let due = *n * self.cfg.stagger;
            *n += 1;
            self.add_task(Task { db, check: 0, retries: 0 }, due);
        }
        while let Some(Reverse((at, event))) = self.events.pop() {
            self.now = at;
            match event {
                Event::Due { id } => {
                    self.ready.insert((at, id), ());
                }
                Event::Answer { id, ok, throttles } => {
                    self.in_flight -= 1;
                    self.requests.push((at, -1));
                    if throttles && self.cfg.throttling {
                        self.rate = (self.rate / 2.0).max(self.cfg.rate / 20.0);
                    } else if ok {
                        self.rate = (self.rate + self.cfg.rate / 20.0).min(self.cfg.rate);
                    }
                    if !ok {
                        let t = &mut self.tasks[id];
                        t.retries += 1;
                        let backoff = backoff(self.cfg, t.retries);
                        self.events.push(Reverse((at + backoff, Event::Due { id })));
                    }
                }
                Event::Tick => {}
            }
            self.dispatch();
        }
        self.out.done = self.done.iter().filter(|d| **d).count();
        self.out.instance_secs = instance_secs(&mut self.requests, self.cfg.concurrency);
        self.out
    }

    fn dispatch(&mut self) {
        while self.in_flight < self.cfg.max_concurrent {
            let Some((&(due, id), ())) = self.ready.iter().next() else { return };
            let _ = due;
            if self.now < self.next_dispatch {
                self.events.push(Reverse((self.next_dispatch, Event::Tick)));
                return;
            }
            self.ready.remove(&(due, id));
            #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a positive interval")]
            let gap = (1000.0 / self.rate) as Ms;
            self.next_dispatch = self.now + gap.max(1);
            self.in_flight += 1;
            self.out.dispatches += 1;
            self.requests.push((self.now, 1));
            let (answer_at, ok, throttles) = match self.design {
                Design::Polling => self.deliver_polling(id),
                Design::FollowUps => self.deliver_follow_up(id),
            };
            self.events.push(Reverse((answer_at, Event::Answer { id, ok, throttles })));
        }
    }

    fn finish(&mut self, db: usize, at: Ms) {
        if !self.done[db] {
            self.done[db] = true;
            self.out.makespan = self.out.makespan.max(at);
        }
    }

    /// Today: start or attach, wait up to `wait`, 503 while running or busy.
    fn deliver_polling(&mut self, id: usize) -> (Ms, bool, bool) {
        let db = self.tasks[id].db;
        let t = self.now + SEC;
        if self.done[db] {
            return (t, true, false);
        }
        let instance = self.dbs[db].instance;
        let op = match self.ops[db] {
            Some(op) => op,
            None => match self.running_on(instance, t) {
                Some(_) => {
                    self.out.answers_409 += 1;
                    self.out.answers_503 += 1;
                    return (t, false, true);
                }
                None => self.start(db, t),
            },
        };
        if op.end <= t + self.cfg.wait {
            let end = op.end.max(t);
            self.out.waiting_request_secs += ms_secs(end - t);
            self.finish(db, end + SEC);
            (end + SEC, true, false)
        } else {
            self.out.waiting_request_secs += ms_secs(self.cfg.wait);
            self.out.answers_503 += 1;
            (t + self.cfg.wait, false, true)
        }
    }

    /// Follow-ups: start, attach or find the instance busy; one follow-up; 200 at once.
    fn deliver_follow_up(&mut self, id: usize) -> (Ms, bool, bool) {
        let Task { db, check, .. } = self.tasks[id];
        let t = self.now + SEC;
        if self.done[db] {
            return (t, true, false);
        }
        let instance = self.dbs[db].instance;
        let (since, expected) = match self.ops[db] {
            Some(op) if op.end <= t => {
                self.finish(db, t + SEC);
                return (t + SEC, true, false);
            }
            Some(op) => (op.start, self.dbs[db].expected),
            None => match self.running_on(instance, t) {
                Some(blocking) => {
                    self.out.answers_409 += 1;
                    (blocking.start, self.dbs[blocking.db].expected)
                }
                None => {
                    let op = self.start(db, t);
                    (op.start, self.dbs[db].expected)
                }
            },
        };
        let now = at(t);
        match self.policy.next_check(now, check, Some(at(since)), Some(Duration::from_millis(expected))) {
            NextCheck::At { check, at: when } => {
                let due = u64::try_from((when - at(0)).num_milliseconds()).unwrap_or(0);
                self.add_task(Task { db, check, retries: 0 }, due);
            }
            NextCheck::Exhausted { .. } => self.out.exhausted += 1,
        }
        (t + SEC, true, false)
    }

    fn start(&mut self, db: usize, t: Ms) -> Op {
        let op = Op { db, start: t, end: t + self.dbs[db].duration };
        self.ops[db] = Some(op);
        self.busy[self.dbs[db].instance] = Some(db);
        op
    }
}

/// Cloud Tasks' retry backoff: `min_backoff` doubled `max_doublings` times, then linear, capped.
fn backoff(cfg: &Config, retries: u32) -> Ms {
    let doublings = retries.saturating_sub(1).min(cfg.max_doublings);
    let linear = u64::from(retries.saturating_sub(1).saturating_sub(cfg.max_doublings));
    let base = cfg.min_backoff << doublings;
    (base + linear * (cfg.min_backoff << cfg.max_doublings)).min(cfg.max_backoff)
}

fn at(ms: Ms) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_800_000_000_000 + i64::try_from(ms).unwrap_or(i64::MAX)).expect("in range")
}

#[expect(clippy::cast_precision_loss, reason = "simulated milliseconds")]
fn ms_secs(ms: Ms) -> f64 {
    ms as f64 / 1000.0
}

/// ∑ ⌈requests in flight ÷ concurrency⌉ × time.
fn instance_secs(changes: &mut [(Ms, i64)], concurrency: usize) -> f64 {
    changes.sort_unstable();
    let (mut open, mut last, mut total) = (0i64, 0, 0.0);
    let per = i64::try_from(concurrency).unwrap_or(1);
    for &(t, d) in changes.iter() {
        #[expect(clippy::cast_precision_loss, reason = "a few thousand instances")]
        let instances = ((open + per - 1) / per) as f64;
        total += instances * ms_secs(t - last);
        open += d;
        last = t;
    }
    total
}

fn draw(cfg: &Config) -> Vec<Db> {
    let mut rng = Rng(cfg.seed);
    let mut dbs = Vec::new();
    for instance in 0..cfg.instances {
        for _ in 0..cfg.databases {
            #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "minutes to ms")]
            let duration = (rng.uniform(cfg.min_minutes, cfg.max_minutes) * 60_000.0) as Ms;
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss,
                reason = "ms"
            )]
            let expected = (duration as f64 * rng.uniform(0.85, 1.2)) as Ms;
            dbs.push(Db { instance, duration, expected });
        }
    }
    dbs
}

fn parse_args() -> Config {
    let mut cfg = Config::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let [key, value] = pair else { panic!("usage: --key value …") };
        let n = |v: &str| v.parse::<f64>().unwrap_or_else(|_| panic!("{key}: not a number: {v}"));
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "command-line sizes")]
        match key.as_str() {
            "--instances" => cfg.instances = n(value) as usize,
            "--databases" => cfg.databases = n(value) as usize,
            "--min-minutes" => cfg.min_minutes = n(value),
            "--max-minutes" => cfg.max_minutes = n(value),
            "--seed" => cfg.seed = n(value) as u64,
            "--stagger" => cfg.stagger = (n(value) * 1000.0) as Ms,
            "--rate" => cfg.rate = n(value),
            "--max-concurrent" => cfg.max_concurrent = n(value) as usize,
            "--wait" => cfg.wait = (n(value) * 1000.0) as Ms,
            "--concurrency" => cfg.concurrency = n(value) as usize,
            "--throttling" => cfg.throttling = value != "off",
            other => panic!("unknown option {other}"),
        }
    }
    cfg
}

fn main() {
    let cfg = parse_args();
    let dbs = draw(&cfg);
    let mut sums = vec![0u64; cfg.instances];
    for db in &dbs {
        sums[db.instance] += db.duration;
    }
    let stagger_tail = cfg.stagger * u64::try_from(cfg.databases.saturating_sub(1)).unwrap_or(0);
    let floor = sums.iter().copied().max().unwrap_or(0);
    println!(
        "night: {} instances × {} databases, exports {}–{} min (seed {}); Cloud Tasks {}/s, {} in flight, backoff {}–{} s, throttling on 503 {}; wait {} s; Cloud Run concurrency {}",
        cfg.instances,
        cfg.databases,
        cfg.min_minutes,
        cfg.max_minutes,
        cfg.seed,
        cfg.rate,
        cfg.max_concurrent,
        cfg.min_backoff / SEC,
        cfg.max_backoff / SEC,
        if cfg.throttling { "on" } else { "off" },
        cfg.wait / SEC,
        cfg.concurrency
    );
    println!(
        "per-instance serial floor: {:.1} min (longest instance's sum of exports; {:.1} min with its stagger)\n",
        ms_secs(floor) / 60.0,
        ms_secs(floor.max(stagger_tail)) / 60.0
    );
    println!(
        "| design | makespan (min) | × floor | done | 503 answers | Cloud SQL 409s | dispatches | request-s waiting | Cloud Run instance-s | chains exhausted |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, design) in [("503 polling (today)", Design::Polling), ("follow-ups", Design::FollowUps)] {
        let o = Sim::new(&cfg, design, &dbs).run();
        #[expect(clippy::cast_precision_loss, reason = "ratio")]
        let ratio = o.makespan as f64 / floor.max(1) as f64;
        println!(
            "| {name} | {:.1} | {ratio:.2} | {}/{} | {} | {} | {} | {:.0} | {:.0} | {} |",
            ms_secs(o.makespan) / 60.0,
            o.done,
            dbs.len(),
            o.answers_503,
            o.answers_409,
            o.dispatches,
            o.waiting_request_secs,
            o.instance_secs,
            o.exhausted
        );
    }
}
