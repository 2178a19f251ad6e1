//! The client side: issuing commands, pumping executions, delivering
//! responses and timers to them, crashing and restarting.

use super::{Endpoint, Msg, Request, Response, World};
use crate::actors::{CommandEntry, ExecId, Running, SentRequest};
use crate::check::Invariant;
use crate::exec::{Settled, SimStep};
use crate::history::{Attempt, ExecutionOutcome, ExecutionRecord};
use crate::DomainCommand;
use eventcore::{CommandId, ExecutionContext, Time};
use std::time::Duration;

impl World {
    /// A client may issue more commands: it fills its in-flight slots.
    pub(super) fn think(&mut self, client: usize) {
        if self.healed_at.is_some() || !self.clients[client].up {
            return;
        }
        while self.clients[client].remaining > 0 && (self.clients[client].running.len() as u32) < self.in_flight {
            self.clients[client].remaining -= 1;
            let job = self.workload.next_command();
            let command = self.new_command(client, job);
            self.start_execution(command);
            if !self.clients[client].up {
                // It crashed while starting (a crash-before-append fault).
                return;
            }
        }
        if self.clients[client].remaining > 0 {
            let pause = Duration::from_micros(self.sched.between(100, 10_000));
            let at = self.clock.after(pause);
            self.push(at, Msg::Think { client });
        } else {
            self.maybe_schedule_heal();
        }
    }

    pub(super) fn new_command(&mut self, client: usize, job: DomainCommand) -> usize {
        let mut entropy = [0u8; 10];
        let a = self.sched.next_u64().to_le_bytes();
        let b = self.sched.next_u64().to_le_bytes();
        entropy[..8].copy_from_slice(&a);
        entropy[8..].copy_from_slice(&b[..2]);
        let command_id = CommandId::v7(self.now(), entropy);
        self.commands.push(CommandEntry {
            job,
            command_id,
            client,
            executions: Vec::new(),
            running: None,
        });
        self.commands.len() - 1
    }

    /// Starts a (re-)execution of `command` with its command id.
    pub(super) fn start_execution(&mut self, command: usize) {
        let now = self.now();
        let seed = self.sched.next_u64();
        let exec = self.next_exec;
        self.next_exec += 1;
        let started_after = self.store.last_position();
        let healed = self.healed_at.is_some();
        let policy = self.active.policy.clone();
        let views_enabled = self.plan.view_cache || self.plan.snapshots;
        let entry = &mut self.commands[command];
        let client = entry.client;
        let (machine, probe) =
            entry
                .job
                .start_probed(policy.clone(), ExecutionContext::new(entry.command_id), now, seed);
        // Only an execution with a fresh command id starts from cached or
        // snapshotted views, as in the executor; a command folded whole
        // has no view streams to prime.
        let use_views = views_enabled && entry.executions.is_empty() && !machine.unprimed_views().is_empty();
        entry.executions.push(ExecutionRecord {
            started_after,
            healed,
            attempts: Vec::new(),
            outcome: ExecutionOutcome::Running,
        });
        entry.running = Some(exec);
        let execution = entry.executions.len() - 1;
        let label = entry.job.label().to_owned();
        self.clients[client].running.insert(exec);
        self.execs.insert(
            exec,
            Running {
                client,
                command,
                execution,
                machine,
                policy,
                wake: None,
                probe,
                use_views,
                tried: Vec::new(),
                primed: Vec::new(),
                cache_use: eventcore::StreamCacheUse::default(),
                sent: Default::default(),
                met_deleted: None,
                subjects: Default::default(),
                missing: Default::default(),
                personal_error: None,
                primed_from_cache: false,
            },
        );
        if self.plan.prime_from_cache {
            // As the executor does, for fresh and known command ids alike:
            // views first (a view stream primed from the view cache or a
            // snapshot is not primed again), then the stream cache.
            self.prime_views(exec);
            self.prime_from_stream_cache(exec);
        }
        self.log(format_args!(
            "c{client} start cmd#{command} run {} x{exec}: {label}",
            execution + 1
        ));
        self.pump(exec);
    }

    /// Polls an execution until it waits or ends, sending what it asks for.
    pub(super) fn pump(&mut self, exec: ExecId) {
        loop {
            self.prime_views(exec);
            let Some(running) = self.execs.get_mut(&exec) else {
                return;
            };
            let client = running.client;
            let deadline = running.machine.deadline();
            let Some(step) = self.in_scope(exec, |machine| machine.poll()) else {
                return;
            };
            if let (SimStep::Read(_) | SimStep::Append(_), Some(deadline)) = (&step, deadline) {
                self.check_sent_before_deadline(exec, deadline);
            }
            if let (Some(met), SimStep::Read(_) | SimStep::Append(_) | SimStep::Wait(_)) =
                (self.execs.get(&exec).and_then(|r| r.met_deleted.clone()), &step)
            {
                self.violation(
                    Invariant::Tombstone,
                    format!("x{exec} was refused with `{met}` and went on instead of ending with it: {step:?}"),
                );
                return;
            }
            let Some(running) = self.execs.get_mut(&exec) else {
                return;
            };
            match step {
                SimStep::Read(request) => {
                    self.log(format_args!(
                        "x{exec} read {} [{}]",
                        request.id,
                        request
                            .streams
                            .iter()
                            .map(|s| format!("{}>{}", s.stream, s.after))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ));
                    if self.plan.prime_from_cache {
                        if let Some(running) = self.execs.get_mut(&exec) {
                            running
                                .sent
                                .insert(request.id, SentRequest::Read(request.request.clone()));
                        }
                    }
                    self.send(exec, Request::Read(request));
                }
                SimStep::Append(mut request) => {
                    let (command, execution) = (running.command, running.execution);
                    if !self.seal_append(exec, &mut request) {
                        // The new encoding failed: the machine ended.
                        continue;
                    }
                    if request.streams.iter().any(|s| s.events.is_empty()) {
                        self.coverage.hit("pure_version_check_sent");
                    }
                    if request
                        .streams
                        .iter()
                        .any(|s| s.expected == eventcore::ExpectedVersion::Any)
                    {
                        self.coverage.hit("relaxed_expectation_sent");
                    }
                    let attempt = Attempt::of(&request);
                    let record = &mut self.commands[command].executions[execution];
                    if !record.attempts.contains(&attempt) {
                        record.attempts.push(attempt);
                    }
                    self.log(format_args!(
                        "x{exec} append {} [{}]",
                        request.id,
                        request
                            .streams
                            .iter()
                            .map(|s| format!("{}@{}+{}", s.stream, s.expected, s.events.len()))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ));
                    if self.fault(self.active.crash_before_append) {
                        self.coverage.hit("crash_before_append");
                        self.crash(client, "between decide and append");
                        return;
                    }
                    if self.plan.prime_from_cache {
                        if let Some(running) = self.execs.get_mut(&exec) {
                            running
                                .sent
                                .insert(request.id, SentRequest::Append(request.request.clone()));
                        }
                    }
                    self.send(exec, Request::Append(request));
                }
                SimStep::Wait(until) => {
                    if running.wake != Some(until) {
                        running.wake = Some(until);
                        self.push(until, Msg::Wake { exec });
                    }
                    return;
                }
                SimStep::Done(settled) => {
                    self.settle(exec, settled);
                    return;
                }
                SimStep::Finished => {
                    self.forget(exec);
                    return;
                }
            }
        }
    }

    /// The machine's deadline is honoured: no request leaves an execution
    /// at or after it ([`Invariant::Protocol`]).
    fn check_sent_before_deadline(&mut self, exec: ExecId, deadline: Time) {
        let now = self.now();
        if now >= deadline {
            self.violation(
                Invariant::Protocol,
                format!("x{exec} sent a request at {now}, at or after its deadline {deadline}"),
            );
        }
    }

    fn send(&mut self, exec: ExecId, request: Request) {
        let epoch = self.store.epoch();
        let delay = self.latency();
        let at = self.clock.after(delay);
        // A retransmission: the store sees the same read twice. Appends are
        // not duplicated: over one connection a store that answered "not
        // applied" (a transient error) can never apply that request later,
        // and the machine relies on exactly that; a network or pooler that
        // replays statements would break the contract for any client.
        let copy = match &request {
            Request::Read(r) => Some(Request::Read(r.clone())),
            Request::ReadAll(id, r) => Some(Request::ReadAll(*id, r.clone())),
            Request::Append(_) => None,
        };
        if let Some(copy) = copy.filter(|_| self.fault(self.active.duplicate_request)) {
            self.coverage.hit("duplicate_request_delivered");
            let extra = self.latency();
            self.push(
                at.saturating_add(extra),
                Msg::Request {
                    to: Endpoint::Exec(exec),
                    epoch,
                    request: copy,
                },
            );
        }
        self.push(
            at,
            Msg::Request {
                to: Endpoint::Exec(exec),
                epoch,
                request,
            },
        );
    }

    fn forget(&mut self, exec: ExecId) -> Option<Running> {
        let running = self.execs.remove(&exec)?;
        self.clients[running.client].running.remove(&exec);
        self.commands[running.command].running = None;
        Some(running)
    }

    fn settle(&mut self, exec: ExecId, settled: Settled) {
        let Some(mut running) = self.forget(exec) else { return };
        let failed = settled.error_kind.is_some();
        let forgotten = std::mem::take(&mut running.cache_use).finish(&mut self.clients[running.client].cache, failed);
        if forgotten > 0 {
            self.coverage.hit("cache_invalidated_by_conflict");
        }
        self.keep_views(exec, &mut running, &settled);
        let entry = &mut self.commands[running.command];
        let previous = running
            .execution
            .checked_sub(1)
            .map(|i| entry.executions[i].outcome.clone());
        let record = &mut entry.executions[running.execution];
        record.outcome = settled.outcome.clone();
        let started_after = record.started_after;
        let healed_run = record.healed && running.execution > 0;
        let stats = &settled.stats;
        let c = &mut self.coverage;
        if stats.conflicts > 0 && settled.attempts > 1 {
            c.hit("conflict_retried");
        }
        if stats.transient_errors > 0 && settled.attempts > 1 {
            c.hit("transient_retried");
        }
        if stats.discovery_rounds > 0 {
            c.hit("discovery_ran");
            if stats.discovery_rounds > 1 {
                c.hit("discovery_multi_round");
            }
            if settled.attempts > 1 || running.execution > 0 {
                c.hit("discovery_rerun_after_retry");
            }
        }
        c.add("stale_response_ignored", u64::from(stats.ignored_responses));
        if let ExecutionOutcome::Acknowledged(receipt) = &settled.outcome {
            if receipt.deduplicated {
                c.hit("lost_ack_deduplicated");
            }
        }
        if settled.outcome.is_verdict() {
            match previous {
                Some(ExecutionOutcome::Crashed) => c.hit("crash_recovered"),
                Some(ExecutionOutcome::Unknown { .. }) => c.hit("unknown_outcome_resolved"),
                _ => {}
            }
        }
        if healed_run {
            c.hit("liveness_reexecution");
        }
        if let Some(kind) = settled.error_kind {
            c.hit(match kind {
                "domain" => "domain_rejected",
                "retries_exhausted" => "retries_exhausted",
                "discovery_limit" => "discovery_limit",
                "outcome_unknown" => "outcome_unknown_error",
                "deadline_exceeded" => "deadline_exceeded",
                _ => "other_error",
            });
            if self.active.policy.retry.max_attempts == 1 && matches!(kind, "retries_exhausted" | "outcome_unknown") {
                c.hit("zero_retries_policy");
            }
        }
        self.log(format_args!(
            "x{exec} done after {} attempts: {}",
            settled.attempts,
            describe(&settled.outcome)
        ));
        if let Some(met) = &running.met_deleted {
            // Ended with the refusal (or, when an earlier attempt's outcome
            // was open, as unknown): never retried, never a conflict.
            if !matches!(settled.error_kind, Some("stream_deleted" | "outcome_unknown")) {
                self.violation(
                    Invariant::Tombstone,
                    format!(
                        "x{exec} was refused with `{met}` but ended {:?} ({})",
                        settled.error_kind,
                        describe(&settled.outcome)
                    ),
                );
            }
            self.coverage.hit("tombstone_refusal_ended_command");
        }
        self.judge_personal(
            exec,
            running.personal_error.as_ref(),
            running.primed_from_cache || !running.primed.is_empty(),
            settled.error_kind,
            &settled.outcome,
        );
        self.judge_execution(exec, &running, &settled, started_after);
        // A client that was told "unknown" may try again at once with the
        // same command id; otherwise the liveness phase resolves it.
        if matches!(settled.outcome, ExecutionOutcome::Unknown { .. })
            && self.healed_at.is_none()
            && self.clients[running.client].up
            && self.fault(self.plan.reexecute_on_restart)
        {
            self.start_execution(running.command);
        }
    }

    pub(super) fn on_response(&mut self, exec: ExecId, epoch: u64, response: Response) {
        if epoch != self.store.epoch() {
            self.coverage.hit("response_dropped_by_restart");
            self.log(format_args!("x{exec} response lost: the store restarted"));
            return;
        }
        let now = self.now();
        if !self.execs.contains_key(&exec) {
            self.coverage.hit("response_to_gone_execution");
            self.log(format_args!(
                "x{exec} response to a finished or crashed execution dropped"
            ));
            return;
        }
        if self.plan.prime_from_cache {
            self.cache_learns(exec, &response);
        }
        if let Response::Read(_, Ok(read)) = &response {
            self.learn_subjects(exec, read.streams.iter().flat_map(|s| s.events.iter()));
        }
        let Some(before) = self.execs.get(&exec).map(|r| r.machine.stats().ignored_responses) else {
            return;
        };
        let deleted = match &response {
            Response::Append(_, Err(eventcore::StoreError::StreamDeleted(d))) => Some(d.to_string()),
            _ => None,
        };
        // The machine decides (and encodes) inside `on_read`: it runs in
        // the scope holding the keys of what it read.
        let id = match response {
            Response::Read(id, result) => {
                self.in_scope(exec, |machine| machine.on_read(id, result, now));
                id
            }
            Response::Append(id, result) => {
                self.in_scope(exec, |machine| machine.on_append(id, result, now));
                id
            }
            Response::ReadAll(id, _) => {
                // Executions never read the global log.
                id
            }
        };
        let Some(running) = self.execs.get_mut(&exec) else {
            return;
        };
        if running.machine.stats().ignored_responses > before {
            self.log(format_args!("x{exec} ignored stale or duplicate response {id}"));
        } else {
            if deleted.is_some() {
                running.met_deleted = deleted;
            }
            self.log(format_args!("x{exec} took response {id}"));
        }
        self.pump(exec);
    }

    /// Primes an execution's declared streams from its client's stream
    /// cache, and checks that every prefix primed is exactly the store's
    /// first events of that stream: a cache may be short, never wrong.
    fn prime_from_stream_cache(&mut self, exec: ExecId) {
        let Some(running) = self.execs.get_mut(&exec) else {
            return;
        };
        let client = running.client;
        let streams = self.commands[running.command].job.streams().to_vec();
        for stream in streams {
            let Some(chunks) = self.clients[client].cache.prefix(&stream) else {
                continue;
            };
            let events: Vec<eventcore::RecordedEvent> = chunks.iter().flat_map(|c| c.iter().cloned()).collect();
            // Priming folds (decodes) the cached events: their subjects'
            // keys are fetched as for a read.
            self.learn_subjects(exec, &events);
            match self.in_scope(exec, |machine| machine.prime(&stream, &events)) {
                None => return,
                Some(false) => continue,
                Some(true) => {}
            }
            self.coverage.hit("primed_from_cache");
            if let Some(running) = self.execs.get_mut(&exec) {
                running.primed_from_cache = true;
            }
            let cached: Vec<&eventcore::RecordedEvent> = events.iter().collect();
            let truth = self
                .store
                .data()
                .read(&eventcore::ReadRequest::new([stream.clone()]))
                .ok()
                .and_then(|r| r.streams.into_iter().next())
                .map(|slice| slice.events)
                .unwrap_or_default();
            let agrees = cached.len() <= truth.len()
                && cached
                    .iter()
                    .zip(&truth)
                    .all(|(c, t)| c.event_id == t.event_id && c.version == t.version && c.position == t.position);
            if !agrees {
                self.violation(
                    Invariant::ViewFold,
                    format!(
                        "x{exec} was primed from the stream cache with {} events of `{stream}` that are not the store's first {} (the store holds {})",
                        cached.len(),
                        cached.len(),
                        truth.len()
                    ),
                );
            }
        }
    }

    /// Lets the execution's stream cache learn from an answer, as the
    /// executor does before handing the answer to the machine.
    fn cache_learns(&mut self, exec: ExecId, response: &Response) {
        let Some(running) = self.execs.get_mut(&exec) else {
            return;
        };
        let cache = &mut self.clients[running.client].cache;
        match response {
            Response::Read(id, result) => {
                if let Some(SentRequest::Read(request)) = running.sent.remove(id) {
                    running.cache_use.read(cache, &request, result);
                }
            }
            Response::Append(id, result) => {
                if let Some(SentRequest::Append(request)) = running.sent.remove(id) {
                    running.cache_use.append(cache, &request, result);
                }
            }
            Response::ReadAll(..) => {}
        }
    }

    pub(super) fn on_wake(&mut self, exec: ExecId) {
        let now = self.now();
        let Some(running) = self.execs.get_mut(&exec) else {
            return;
        };
        if running.wake.is_none_or(|w| w > now) {
            return;
        }
        running.wake = None;
        running.machine.on_wake(now);
        self.log(format_args!("x{exec} woke"));
        self.pump(exec);
    }

    /// The client process dies: every execution in flight is lost and its
    /// command's outcome becomes unknown.
    pub(super) fn crash(&mut self, client: usize, why: &str) {
        if !self.clients[client].up || self.healed_at.is_some() {
            return;
        }
        self.clients[client].up = false;
        self.clients[client].cache = eventcore::CachedStreams::new(self.clients[client].cache.capacity());
        self.clients[client].views.clear();
        self.coverage.hit("client_crash");
        self.log(format_args!("c{client} CRASH ({why})"));
        let lost: Vec<ExecId> = self.clients[client].running.iter().copied().collect();
        for exec in lost {
            if let Some(running) = self.forget(exec) {
                self.commands[running.command].executions[running.execution].outcome = ExecutionOutcome::Crashed;
                self.clients[client].orphans.push(running.command);
            }
        }
        let down = Duration::from_micros(self.faults.between(5_000, 300_000));
        let at = self.clock.after(down);
        self.push(at, Msg::Restart { client });
    }

    /// A crashed client comes back and may re-execute what it lost.
    pub(super) fn restart(&mut self, client: usize) {
        if self.clients[client].up {
            return;
        }
        self.clients[client].up = true;
        self.log(format_args!("c{client} restarted"));
        if self.healed_at.is_some() {
            return;
        }
        let orphans = std::mem::take(&mut self.clients[client].orphans);
        for command in orphans {
            if self.commands[command].running.is_none() && self.fault(self.plan.reexecute_on_restart) {
                self.start_execution(command);
                if !self.clients[client].up {
                    return;
                }
            }
        }
        let now = self.now();
        self.push(now, Msg::Think { client });
    }
}

fn describe(outcome: &ExecutionOutcome) -> String {
    match outcome {
        ExecutionOutcome::Acknowledged(receipt) => format!(
            "committed{} [{}]",
            if receipt.deduplicated { " (deduplicated)" } else { "" },
            receipt
                .streams
                .iter()
                .map(|s| format!("{}@{}..={}", s.stream, s.first_version, s.last_version))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        ExecutionOutcome::NothingToDo => "nothing to do".to_owned(),
        ExecutionOutcome::Refused { reason } => format!("refused: {reason}"),
        ExecutionOutcome::GaveUp { reason } => format!("gave up: {reason}"),
        ExecutionOutcome::Unknown { reason } => format!("UNKNOWN: {reason}"),
        ExecutionOutcome::Crashed => "crashed".to_owned(),
        ExecutionOutcome::Running => "running".to_owned(),
    }
}
