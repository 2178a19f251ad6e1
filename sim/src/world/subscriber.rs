//! Subscription consumers: the real [`SubscriptionMachine`] reading the
//! global log through the same faulty network, a handler that records what
//! it handled, a durable checkpoint, commit notifications that may be lost,
//! and crashes that resume from the saved checkpoint.

use super::{Endpoint, FencedWrite, Msg, Request, Response, World};
use crate::actors::Subscriber;
use crate::check::{Invariant, SubscriberRecord, SubscriberRun, Violation};
use crate::rng::{Purpose, SimRng};
use eventcore::{
    Batch, CheckpointMode, ConsumerError, EventFilter, EventType, GlobalPosition, HandleError, RequestId, RetryPolicy,
    SubscriptionMachine, SubscriptionPolicy, SubscriptionStep,
};
use std::num::NonZeroU32;
use std::time::Duration;

/// Draws the subscribers of a run from their own random stream.
pub(super) fn subscribers(seed: u64) -> Vec<Subscriber> {
    let mut rng = SimRng::new(seed, Purpose::Subscribers);
    let count = rng.below(4);
    let mut leases = SimRng::new(seed, Purpose::Leases);
    let mut subscribers: Vec<Subscriber> = (0..count)
        .map(|n| {
            let (label, filter) = match rng.below(4) {
                0 => ("all", EventFilter::all()),
                1 => (
                    "accounts",
                    EventFilter::all().with_stream_prefix(crate::workload::bank::PREFIX),
                ),
                2 => (
                    "orders",
                    EventFilter::all().with_stream_prefix(crate::workload::shop::ORDER_PREFIX),
                ),
                _ => (
                    "deposits+cancellations",
                    EventFilter::all().with_event_types(
                        ["Deposited", "OrderCancelled"]
                            .into_iter()
                            .filter_map(|t| EventType::new(t).ok()),
                    ),
                ),
            };
            let exactly_once = rng.chance(500);
            let policy = draw_policy(&mut rng, exactly_once);
            Subscriber {
                machine: None,
                policy,
                incarnation: 0,
                checkpoint: GlobalPosition::START,
                finished: Default::default(),
                covered: GlobalPosition::START,
                wake: None,
                shut_down: false,
                record: SubscriberRecord {
                    name: format!(
                        "s{n} ({label}, {})",
                        if exactly_once { "exactly-once" } else { "at-least-once" }
                    ),
                    filter,
                    exactly_once,
                    runs: Vec::new(),
                    stopped: None,
                },
                lease: None,
                projection: None,
            }
        })
        .collect();
    for s in &mut subscribers {
        s.lease = super::leases::leased(&mut leases);
        if let Some(l) = &s.lease {
            s.record.name = format!(
                "{} ×{} on a lease of {:?}",
                s.record.name,
                l.instances.len(),
                l.policy.ttl
            );
        }
    }
    subscribers
}

/// A subscription's policy: batch size and poll interval drawn from `rng`,
/// retrying forever with a short backoff.
fn draw_policy(rng: &mut SimRng, exactly_once: bool) -> SubscriptionPolicy {
    let batch = NonZeroU32::new(rng.between(1, 8) as u32).unwrap_or(NonZeroU32::MIN);
    let policy = SubscriptionPolicy::default()
        .with_batch_size(batch)
        .with_poll_interval(Duration::from_micros(rng.between(20_000, 300_000)))
        .with_retry(RetryPolicy {
            max_attempts: u32::MAX,
            initial_backoff: Duration::from_millis(1),
            multiplier: 2,
            max_backoff: Duration::from_millis(100),
        })
        .with_checkpoint_mode(if exactly_once {
            CheckpointMode::WithBatch
        } else {
            CheckpointMode::AfterBatch
        });
    SubscriptionPolicy {
        fetch_timeout: Duration::from_millis(150),
        ..policy
    }
}

/// A user domain's projections as exactly-once subscribers (numbered after
/// the drawn ones), each perhaps on a lease, drawn from their own stream.
pub(super) fn projection_subscribers(
    seed: u64,
    first: usize,
    projections: Vec<Box<dyn crate::domain::DomainProjection>>,
) -> Vec<Subscriber> {
    let mut rng = SimRng::new(seed, Purpose::Projections);
    projections
        .into_iter()
        .enumerate()
        .map(|(n, projection)| {
            let policy = draw_policy(&mut rng, true);
            let lease = super::leases::leased(&mut rng);
            let mut name = format!("s{} (projection {}, exactly-once)", first + n, projection.name());
            if let Some(l) = &lease {
                name = format!("{name} ×{} on a lease of {:?}", l.instances.len(), l.policy.ttl);
            }
            Subscriber {
                machine: None,
                policy,
                incarnation: 0,
                checkpoint: GlobalPosition::START,
                finished: Default::default(),
                covered: GlobalPosition::START,
                wake: None,
                shut_down: false,
                record: SubscriberRecord {
                    name,
                    filter: projection.filter(),
                    exactly_once: true,
                    runs: Vec::new(),
                    stopped: None,
                },
                lease,
                projection: Some(projection),
            }
        })
        .collect()
}

impl World {
    /// Starts (or restarts) a subscriber from its durable checkpoint.
    pub(super) fn start_subscriber(&mut self, sub: usize) {
        let now = self.now();
        let seed = self.sched.next_u64();
        let s = &mut self.subscribers[sub];
        s.incarnation += 1;
        s.wake = None;
        s.machine = Some(SubscriptionMachine::new(
            s.checkpoint,
            s.record.filter.clone(),
            s.policy.clone(),
            now,
            seed,
        ));
        s.record.runs.push(SubscriberRun {
            start_after: s.checkpoint,
            handled: Vec::new(),
        });
        let (incarnation, checkpoint) = (s.incarnation, s.checkpoint);
        self.log(format_args!("s{sub}.{incarnation} start after checkpoint {checkpoint}"));
        self.sub_pump(sub);
    }

    fn sub_pump(&mut self, sub: usize) {
        loop {
            let now = self.now();
            let incarnation = self.subscribers[sub].incarnation;
            let Some(machine) = self.subscribers[sub].machine.as_mut() else {
                return;
            };
            match machine.poll() {
                SubscriptionStep::Fetch { id, request, .. } => {
                    self.log(format_args!("s{sub}.{incarnation} fetch {id} after {}", request.after));
                    let epoch = self.store.epoch();
                    let delay = self.latency();
                    let at = self.clock.after(delay);
                    self.push(
                        at,
                        Msg::Request {
                            to: Endpoint::Sub { sub, incarnation },
                            epoch,
                            request: Request::ReadAll(id, request),
                        },
                    );
                    self.window_crash(sub, "fetched");
                }
                SubscriptionStep::Deliver(batch) => {
                    // Handling takes time: a crash may land between handling
                    // and saving the checkpoint.
                    let mut at = self.clock.after(Duration::from_micros(self.sched.between(50, 5_000)));
                    // Exactly-once: the batch commits with its checkpoint,
                    // a write the store fences.
                    let exactly_once = self.subscribers[sub].policy.checkpoint == CheckpointMode::WithBatch;
                    let write = if exactly_once {
                        self.fenced_write(sub, &mut at)
                    } else {
                        None
                    };
                    self.push(
                        at,
                        Msg::Handled {
                            sub,
                            incarnation,
                            batch,
                            write,
                        },
                    );
                    self.window_crash(sub, "handling");
                }
                SubscriptionStep::SaveCheckpoint { id, position } => {
                    let mut at = self.clock.after(Duration::from_micros(self.sched.between(50, 5_000)));
                    let write = self.fenced_write(sub, &mut at);
                    self.push(
                        at,
                        Msg::Saved {
                            sub,
                            incarnation,
                            id,
                            position,
                            write,
                        },
                    );
                    self.window_crash(sub, "saving_checkpoint");
                }
                SubscriptionStep::Park { id, event, .. } => {
                    // The workload has no poison events; park if asked. A
                    // parked event is finished with: the checkpoint may pass it.
                    self.subscribers[sub].finished.insert(event.position);
                    if let Some(m) = self.subscribers[sub].machine.as_mut() {
                        m.on_parked(id, Ok(()), now);
                    }
                }
                SubscriptionStep::Wait { until } => {
                    let s = &mut self.subscribers[sub];
                    if until != eventcore::Time::MAX && s.wake != Some(until) {
                        s.wake = Some(until);
                        self.push(until, Msg::SubWake { sub, incarnation });
                    }
                    return;
                }
                SubscriptionStep::Stopped(result) => {
                    let s = &mut self.subscribers[sub];
                    s.machine = None;
                    let fenced_holder = match (&result, &s.lease) {
                        (Err(error), Some(l)) if error.is_fenced() => l.runner.map(|(inst, _)| inst),
                        _ => None,
                    };
                    if let Some(inst) = fenced_holder {
                        // Another instance took over: this one stops, as a
                        // runner does with a fenced error, and competes
                        // again as a new holder.
                        self.coverage.hit("lease_run_fenced");
                        self.log(format_args!("s{sub}.{incarnation} fenced out: {result:?}"));
                        self.lease_gone(sub, inst);
                        if !self.subscribers[sub].shut_down {
                            self.start_instance(sub, inst);
                        }
                        return;
                    }
                    if let Err(error) = &result {
                        s.record.stopped = Some(error.to_string());
                    }
                    self.log(format_args!("s{sub}.{incarnation} stopped: {result:?}"));
                    return;
                }
                SubscriptionStep::Finished => return,
            }
        }
    }

    /// The handler finished a batch (or failed it).
    pub(super) fn on_handled(&mut self, sub: usize, incarnation: u32, batch: Batch, write: Option<FencedWrite>) {
        let current = self.current(sub, incarnation);
        if !current && write.is_none() {
            return;
        }
        let now = self.now();
        if current && self.fault(self.active.handler_fail) {
            self.coverage.hit("subscriber_handler_failed");
            self.log(format_args!("s{sub}.{incarnation} handler fails on batch {}", batch.id));
            let error = HandleError::Consumer(ConsumerError::Transient("injected".into()));
            if let Some(m) = self.subscribers[sub].machine.as_mut() {
                m.on_handled(batch.id, Err(error), now);
            }
            self.sub_pump(sub);
            return;
        }
        if let Some(write) = write {
            // The batch commits with its checkpoint: the store fences it,
            // whether or not its run is still current.
            if !self.fence_accepts(sub, write.token, write.paused) {
                if current {
                    let error = HandleError::Consumer(ConsumerError::Fenced(format!("{} is fenced", write.token)));
                    if let Some(m) = self.subscribers[sub].machine.as_mut() {
                        m.on_handled(batch.id, Err(error), now);
                    }
                    self.sub_pump(sub);
                }
                return;
            }
            if !current {
                let s = &mut self.subscribers[sub];
                if let Some(run) = s.record.runs.get_mut(write.run) {
                    run.handled.extend(batch.events.iter().map(|e| e.position));
                }
                s.finished.extend(batch.events.iter().map(|e| e.position));
                if let Some(projection) = s.projection.as_mut() {
                    batch.events.iter().for_each(|e| projection.apply(e));
                }
                s.checkpoint = s.checkpoint.max(batch.checkpoint);
                self.log(format_args!(
                    "s{sub}.{incarnation} (gone) committed {} events through {}",
                    batch.events.len(),
                    batch.checkpoint
                ));
                self.check_checkpoint_covered(sub);
                return;
            }
        }
        let s = &mut self.subscribers[sub];
        let run = s.record.runs.len();
        let redelivered = run > 1
            && s.record.runs[..run - 1]
                .iter()
                .any(|r| batch.events.iter().any(|e| r.handled.contains(&e.position)));
        if let Some(current) = s.record.runs.last_mut() {
            current.handled.extend(batch.events.iter().map(|e| e.position));
        }
        s.finished.extend(batch.events.iter().map(|e| e.position));
        if s.policy.checkpoint == CheckpointMode::WithBatch {
            // The handler commits the checkpoint with its own writes.
            if let Some(projection) = s.projection.as_mut() {
                batch.events.iter().for_each(|e| projection.apply(e));
            }
            s.checkpoint = s.checkpoint.max(batch.checkpoint);
        }
        if let Some(m) = s.machine.as_mut() {
            m.on_handled(batch.id, Ok(()), now);
        }
        self.check_checkpoint_covered(sub);
        if redelivered {
            self.coverage.hit("subscriber_redelivered_after_crash");
        }
        self.coverage.hit("subscriber_batch_handled");
        self.log(format_args!(
            "s{sub}.{incarnation} handled {} events through {}",
            batch.events.len(),
            batch.checkpoint
        ));
        self.sub_pump(sub);
    }

    /// A checkpoint save finished (or failed).
    pub(super) fn on_saved(
        &mut self,
        sub: usize,
        incarnation: u32,
        id: RequestId,
        position: GlobalPosition,
        write: Option<FencedWrite>,
    ) {
        let current = self.current(sub, incarnation);
        if !current && write.is_none() {
            return;
        }
        let now = self.now();
        let failed = current && self.fault(self.active.checkpoint_fail);
        if let Some(write) = write.filter(|_| !failed) {
            // A fenced write reaches the store even if its run is gone.
            if !self.fence_accepts(sub, write.token, write.paused) {
                if current {
                    let error = ConsumerError::Fenced(format!("{} is fenced", write.token));
                    if let Some(m) = self.subscribers[sub].machine.as_mut() {
                        m.on_checkpoint_saved(id, Err(error), now);
                    }
                    self.sub_pump(sub);
                }
                return;
            }
            if !current {
                let s = &mut self.subscribers[sub];
                s.checkpoint = s.checkpoint.max(position);
                self.log(format_args!("s{sub}.{incarnation} (gone) saved checkpoint {position}"));
                self.check_checkpoint_covered(sub);
                return;
            }
        }
        let result = if failed {
            self.coverage.hit("subscriber_checkpoint_failed");
            Err(ConsumerError::Transient("injected".into()))
        } else {
            let s = &mut self.subscribers[sub];
            if position < s.checkpoint && s.policy.checkpoint == CheckpointMode::AfterBatch {
                let detail = format!(
                    "{} asked to move its checkpoint back from {} to {position}",
                    s.record.name, s.checkpoint
                );
                self.violation(crate::check::Invariant::Subscription, detail);
                return;
            }
            s.checkpoint = s.checkpoint.max(position);
            Ok(())
        };
        self.check_checkpoint_covered(sub);
        self.log(format_args!(
            "s{sub}.{incarnation} save checkpoint {position}: {}",
            if result.is_ok() { "saved" } else { "failed" }
        ));
        if let Some(m) = self.subscribers[sub].machine.as_mut() {
            m.on_checkpoint_saved(id, result, now);
        }
        self.sub_pump(sub);
    }

    /// A durable checkpoint promises that every matching event at or below
    /// it was finished with: a crash resumes after it and never sees them
    /// again. Checked every time the checkpoint moves, which is every step
    /// that can break it.
    fn check_checkpoint_covered(&mut self, sub: usize) {
        let s = &self.subscribers[sub];
        if s.checkpoint <= s.covered {
            return;
        }
        let (from, to) = (s.covered, s.checkpoint);
        let events = self.store.data().events();
        let start = events.partition_point(|e| e.position <= from);
        let unfinished = events[start..]
            .iter()
            .take_while(|e| e.position <= to)
            .find(|e| s.record.filter.matches(e) && !s.finished.contains(&e.position))
            .map(|e| (e.position, e.stream_id.clone(), e.version));
        match unfinished {
            Some((position, stream, version)) => {
                let detail = format!(
                    "{}'s checkpoint moved to {to}, past `{stream}`@{version} (position {position}), \
                     which no run finished handling: a crash now would skip it",
                    s.record.name
                );
                self.violation(Invariant::Subscription, detail);
            }
            None => self.subscribers[sub].covered = to,
        }
    }

    /// Crashes a subscriber at a point inside its window (a fetch in flight,
    /// a batch being handled, a checkpoint being saved), on some seeds: the
    /// random crash times of the plan rarely land there.
    fn window_crash(&mut self, sub: usize, point: &'static str) {
        if self.window_crashes == 0 || self.healed_at.is_some() || !self.window.chance(125) {
            return;
        }
        self.window_crashes -= 1;
        self.coverage.hit(match point {
            "fetched" => "subscriber_crash_after_fetch",
            "handling" => "subscriber_crash_while_handling",
            _ => "subscriber_crash_while_saving_checkpoint",
        });
        let now = self.now();
        self.log(format_args!("s{sub} crash scheduled inside its window ({point})"));
        self.push(now, Msg::SubCrash { sub });
    }

    fn current(&self, sub: usize, incarnation: u32) -> bool {
        let s = &self.subscribers[sub];
        s.incarnation == incarnation && s.machine.is_some()
    }

    pub(super) fn on_sub_response(&mut self, sub: usize, incarnation: u32, epoch: u64, response: Response) {
        if epoch != self.store.epoch() {
            self.coverage.hit("response_dropped_by_restart");
            self.log(format_args!("s{sub}.{incarnation} response lost: the store restarted"));
            return;
        }
        if !self.current(sub, incarnation) {
            self.log(format_args!(
                "s{sub}.{incarnation} response to a dead incarnation dropped"
            ));
            return;
        }
        let now = self.now();
        if let (Response::ReadAll(id, result), Some(m)) = (response, self.subscribers[sub].machine.as_mut()) {
            let before = m.stats().ignored_responses;
            m.on_fetched(id, result, now);
            if m.stats().ignored_responses > before {
                self.coverage.hit("subscriber_stale_ignored");
            }
            self.log(format_args!("s{sub}.{incarnation} took fetch {id}"));
        }
        self.sub_pump(sub);
    }

    pub(super) fn on_notify(&mut self, sub: usize, incarnation: u32) {
        if !self.current(sub, incarnation) {
            return;
        }
        let now = self.now();
        if let Some(m) = self.subscribers[sub].machine.as_mut() {
            m.on_notified(now);
        }
        self.sub_pump(sub);
    }

    pub(super) fn on_sub_wake(&mut self, sub: usize, incarnation: u32) {
        let now = self.now();
        if !self.current(sub, incarnation) || self.subscribers[sub].wake.is_none_or(|w| w > now) {
            return;
        }
        self.subscribers[sub].wake = None;
        if let Some(m) = self.subscribers[sub].machine.as_mut() {
            m.on_wake(now);
        }
        self.sub_pump(sub);
    }

    /// Every commit notifies every running subscriber (LISTEN/NOTIFY);
    /// notifications may be lost.
    pub(super) fn notify_subscribers(&mut self) {
        for sub in 0..self.subscribers.len() {
            let s = &self.subscribers[sub];
            if s.machine.is_none() {
                continue;
            }
            let incarnation = s.incarnation;
            if self.fault(self.active.notify_lost) {
                self.coverage.hit("notification_lost");
                continue;
            }
            let delay = self.latency();
            let at = self.clock.after(delay);
            self.push(at, Msg::Notify { sub, incarnation });
        }
    }

    pub(super) fn sub_crash(&mut self, sub: usize) {
        if self.subscribers[sub].lease.is_some() {
            if self.healed_at.is_some() || !self.lease_crash(sub) {
                return;
            }
            self.coverage.hit("subscriber_crash");
            let at = self
                .clock
                .after(Duration::from_micros(self.faults.between(5_000, 300_000)));
            self.push(at, Msg::SubRestart { sub });
            return;
        }
        if self.healed_at.is_some() || self.subscribers[sub].machine.is_none() {
            return;
        }
        self.subscribers[sub].machine = None;
        self.coverage.hit("subscriber_crash");
        let checkpoint = self.subscribers[sub].checkpoint;
        self.log(format_args!("s{sub} CRASH (checkpoint {checkpoint} survives)"));
        let at = self
            .clock
            .after(Duration::from_micros(self.faults.between(5_000, 300_000)));
        self.push(at, Msg::SubRestart { sub });
    }

    pub(super) fn sub_restart(&mut self, sub: usize) {
        let s = &self.subscribers[sub];
        if s.lease.is_some() {
            if !s.shut_down && s.record.stopped.is_none() && self.lease_restart(sub) {
                self.coverage.hit("subscriber_resumed");
            }
            return;
        }
        if s.machine.is_some() || s.shut_down || s.record.stopped.is_some() {
            return;
        }
        self.coverage.hit("subscriber_resumed");
        self.start_subscriber(sub);
    }

    /// True when every subscriber has handled everything committed.
    pub(super) fn subscribers_caught_up(&self) -> bool {
        let head = self.store.last_position();
        self.subscribers.iter().all(|s| {
            s.record.stopped.is_some()
                || s.machine
                    .as_ref()
                    .is_some_and(|m| m.is_caught_up() && m.checkpoint() >= head)
        })
    }

    /// Stops every subscriber cleanly (the end of the run).
    pub(super) fn shut_down_subscribers(&mut self) {
        let now = self.now();
        for sub in 0..self.subscribers.len() {
            self.subscribers[sub].shut_down = true;
            if let Some(m) = self.subscribers[sub].machine.as_mut() {
                m.on_shutdown(now);
            }
            self.sub_pump(sub);
            self.lease_shutdown(sub);
        }
    }
}

impl World {
    /// For a leased subscription's run: the write's token and run, and
    /// whether its holder pauses first (which moves `at`).
    fn fenced_write(&mut self, sub: usize, at: &mut eventcore::Time) -> Option<FencedWrite> {
        let token = self.run_token(sub)?;
        let run = self.subscribers[sub].record.runs.len().checked_sub(1)?;
        let paused = self.maybe_pause(sub);
        if let Some(until) = paused {
            *at = until;
        }
        Some(FencedWrite {
            token,
            run,
            paused: paused.is_some(),
        })
    }

    /// Each user projection's committed read model against a fresh one fed
    /// the committed events it subscribed to, up to its checkpoint; then
    /// the projection's own rules.
    pub(super) fn check_projections(&self, events: &[eventcore::RecordedEvent]) -> Vec<Violation> {
        let mut violations = Vec::new();
        let mut fresh = self.workload.projections().into_iter();
        for s in &self.subscribers {
            let Some(committed) = &s.projection else {
                continue;
            };
            let Some(mut replay) = fresh.next() else {
                break;
            };
            events
                .iter()
                .filter(|e| e.position <= s.checkpoint && s.record.filter.matches(e))
                .for_each(|e| replay.apply(e));
            let (got, want) = (committed.state(), replay.state());
            if got != want {
                violations.push(Violation {
                    invariant: Invariant::Projection,
                    detail: format!(
                        "subscriber {}: the read model committed through {} is {got}, a replay of its events gives {want}",
                        s.record.name, s.checkpoint
                    ),
                });
            }
            violations.extend(committed.check().into_iter().map(|rule| Violation {
                invariant: Invariant::Projection,
                detail: format!("subscriber {}: {rule}", s.record.name),
            }));
        }
        violations
    }
}
