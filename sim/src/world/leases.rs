//! Leased subscriptions: several instances of one subscription compete for
//! its lease through the core's [`LeaseMachine`], against a simulated lease
//! store that lives by simulated time. The instance that wins runs the
//! subscription; its writes (checkpoints, and batches committed with their
//! checkpoint) carry its fencing token and the store refuses older tokens.
//!
//! Faults: lease requests fail, get lost or are slow like any store
//! request; a renewal's answer may be slower than the TTL (the holder's
//! lease expires while it is slow); a holder may pause between deciding a
//! write and making it for longer than the TTL (another instance takes
//! over, and the paused write must be refused); clock jumps pass a held
//! lease's validity. Every accepted write is checked against the current
//! token ([`Invariant::Fencing`]).

use super::{Msg, World};
use crate::actors::{Instance, Leased};
use crate::check::Invariant;
use crate::faults::Profile;
use crate::rng::SimRng;
use eventcore::{LeaseFailure, LeaseMachine, LeasePolicy, LeaseStep, LeaseToken, RequestId, RetryPolicy, Time};
use std::time::Duration;

/// Draws whether a subscription is leased, and how, from the lease stream.
pub(super) fn leased(rng: &mut SimRng) -> Option<Leased> {
    let on = rng.chance(600);
    let competing = rng.chance(800);
    let instances = if competing { rng.between(2, 3) as usize } else { 1 };
    let ttl = Duration::from_millis(rng.between(200, 1_500));
    let pause_on = rng.chance(600);
    let pause = rng.between(50, 400) as u32;
    let slow_on = rng.chance(500);
    let slow_renewal = rng.between(20, 200) as u32;
    if !on {
        return None;
    }
    let policy = LeasePolicy::new(ttl).with_retry(RetryPolicy {
        max_attempts: u32::MAX,
        initial_backoff: Duration::from_millis(1),
        multiplier: 2,
        max_backoff: Duration::from_millis(50),
    });
    Some(Leased {
        policy,
        pause: if pause_on { pause } else { 0 },
        slow_renewal: if slow_on { slow_renewal } else { 0 },
        holder: None,
        token: 0,
        expires_at: Time::ZERO,
        fence: 0,
        instances: (0..instances)
            .map(|_| Instance {
                machine: None,
                generation: 0,
                wake: None,
                paused_until: None,
                refused: false,
            })
            .collect(),
        runner: None,
    })
}

/// A lease request on its way to the store.
#[derive(Clone, Copy, Debug)]
pub(super) enum LeaseOp {
    Acquire,
    Renew(LeaseToken),
}

impl World {
    fn leased(&mut self, sub: usize) -> Option<&mut Leased> {
        self.subscribers[sub].lease.as_mut()
    }

    /// Queues a lease message (tie-break from the lease stream).
    fn lease_push(&mut self, at: Time, msg: Msg) {
        let tie = self.lease_faults.next_u64();
        self.queue.push(at, tie, msg);
    }

    fn lease_fault(&mut self, per_mille: u32) -> bool {
        self.healed_at.is_none()
            && self.config.profile != Profile::Calm
            && per_mille > 0
            && self.lease_faults.chance(per_mille)
    }

    fn lease_latency(&mut self) -> Duration {
        let (lo, hi) = self.active.latency_us;
        let mut micros = self.lease_faults.between(lo, hi);
        if self.lease_fault(self.active.slow) {
            micros += self.lease_faults.between(0, self.active.slow_max_ms * 1_000);
        }
        Duration::from_micros(micros)
    }

    /// Starts every instance of a leased subscription.
    pub(super) fn start_instances(&mut self, sub: usize) {
        let count = self.leased(sub).map_or(0, |l| l.instances.len());
        for inst in 0..count {
            self.start_instance(sub, inst);
        }
    }

    /// (Re)starts one instance with a fresh lease machine: a new holder as
    /// far as the store is concerned.
    pub(super) fn start_instance(&mut self, sub: usize, inst: usize) {
        let now = self.now();
        let seed = self.lease_faults.next_u64();
        let Some(l) = self.leased(sub) else { return };
        let machine = LeaseMachine::new(l.policy.clone(), now, seed);
        let i = &mut l.instances[inst];
        i.machine = Some(machine);
        i.generation += 1;
        i.wake = None;
        i.refused = false;
        let generation = i.generation;
        self.log(format_args!("s{sub}/i{inst}.{generation} competes for the lease"));
        self.lease_pump(sub, inst);
    }

    fn lease_pump(&mut self, sub: usize, inst: usize) {
        loop {
            let Some(l) = self.subscribers[sub].lease.as_mut() else {
                return;
            };
            let i = &mut l.instances[inst];
            let generation = i.generation;
            let Some(machine) = i.machine.as_mut() else { return };
            match machine.poll() {
                LeaseStep::Acquire { id, .. } => self.lease_send(sub, inst, generation, id, LeaseOp::Acquire),
                LeaseStep::Renew { id, token, .. } => self.lease_send(sub, inst, generation, id, LeaseOp::Renew(token)),
                LeaseStep::Held { token, valid_until } => {
                    self.log(format_args!(
                        "s{sub}/i{inst}.{generation} holds the lease with {token} until {valid_until}"
                    ));
                    self.lease_won(sub, inst, token);
                }
                LeaseStep::Wait { until } => {
                    if until != Time::MAX && i.wake != Some(until) {
                        i.wake = Some(until);
                        self.lease_push(until, Msg::LeaseWake { sub, inst, generation });
                    }
                    return;
                }
                LeaseStep::Lost { token } => {
                    let refused = i.refused;
                    i.machine = None;
                    self.coverage.hit(if refused {
                        "lease_renewal_refused"
                    } else {
                        "lease_expired"
                    });
                    self.log(format_args!(
                        "s{sub}/i{inst}.{generation} lost the lease {token} ({})",
                        if refused { "renewal refused" } else { "validity passed" }
                    ));
                    self.lease_gone(sub, inst);
                    if !self.subscribers[sub].shut_down {
                        self.start_instance(sub, inst);
                    }
                    return;
                }
                LeaseStep::Failed(message) => {
                    i.machine = None;
                    self.violation(
                        Invariant::Subscription,
                        format!("s{sub}/i{inst}: the lease failed permanently: {message}"),
                    );
                    return;
                }
                LeaseStep::Stopped { token } => {
                    i.machine = None;
                    if let Some(token) = token {
                        if l.token == token.get() && l.holder.is_some_and(|(h, _)| h == inst) {
                            l.holder = None;
                            l.expires_at = Time::ZERO;
                        }
                    }
                    return;
                }
                LeaseStep::Finished => return,
            }
        }
    }

    fn lease_send(&mut self, sub: usize, inst: usize, generation: u32, id: RequestId, op: LeaseOp) {
        let at = self.now().saturating_add(self.lease_latency());
        self.lease_push(
            at,
            Msg::LeaseRequest {
                sub,
                inst,
                generation,
                id,
                op,
            },
        );
    }

    /// The instance won a tenure: it starts a run from the durable
    /// checkpoint (claiming it with the new token), replacing the run of any
    /// earlier holder, which may not have noticed yet.
    fn lease_won(&mut self, sub: usize, inst: usize, token: LeaseToken) {
        if self.subscribers[sub].shut_down || self.subscribers[sub].record.stopped.is_some() {
            return;
        }
        if let Some(l) = self.leased(sub) {
            l.runner = Some((inst, token));
        }
        self.subscribers[sub].machine = None;
        self.start_subscriber(sub);
    }

    /// The instance's tenure ended: its run (if it still has it) stops.
    pub(super) fn lease_gone(&mut self, sub: usize, inst: usize) {
        let Some(l) = self.leased(sub) else { return };
        if l.runner.is_some_and(|(r, _)| r == inst) {
            l.runner = None;
            self.subscribers[sub].machine = None;
            self.log(format_args!("s{sub}/i{inst} stops its run"));
        }
    }

    /// A lease request reaches the store.
    pub(super) fn on_lease_request(&mut self, sub: usize, inst: usize, generation: u32, id: RequestId, op: LeaseOp) {
        let now = self.now();
        let up = self.store.is_up();
        let transient = self.lease_fault(self.active.read_transient);
        let Some(l) = self.leased(sub) else { return };
        let ttl = l.policy.ttl;
        let me = (inst, generation);
        let mut taken_over = false;
        let mut standby = false;
        let result = if !up {
            Err(LeaseFailure::Transient("connection refused".into()))
        } else if transient {
            Err(LeaseFailure::Transient("injected".into()))
        } else {
            match op {
                LeaseOp::Acquire => {
                    let mine = l.holder == Some(me);
                    if l.holder.is_some() && !mine && now < l.expires_at {
                        standby = true;
                        Ok(None)
                    } else {
                        if !mine {
                            taken_over = l.holder.is_some();
                            l.token += 1;
                            l.fence = l.token;
                            l.holder = Some(me);
                        }
                        l.expires_at = now.saturating_add(ttl);
                        Ok(Some(LeaseToken::new(l.token)))
                    }
                }
                LeaseOp::Renew(token) => {
                    if l.holder == Some(me) && l.token == token.get() {
                        l.expires_at = now.saturating_add(ttl);
                        Ok(Some(token))
                    } else {
                        Err(LeaseFailure::Lost)
                    }
                }
            }
        };
        if taken_over {
            self.coverage.hit("lease_taken_over");
        }
        if standby {
            self.coverage.hit("lease_standby");
        }
        self.log(format_args!(
            "lease store: s{sub}/i{inst}.{generation} {op:?} {id} -> {result:?}"
        ));
        if self.lease_fault(self.active.read_lost) {
            return;
        }
        let mut delay = self.lease_latency();
        let slow = self.leased(sub).map_or(0, |l| l.slow_renewal);
        if matches!(op, LeaseOp::Renew(_)) && self.lease_fault(slow) {
            // The holder hears of its renewal only after its lease lapsed.
            delay += ttl + Duration::from_micros(self.lease_faults.between(0, ttl.as_micros() as u64));
        }
        let at = self.now().saturating_add(delay);
        self.lease_push(
            at,
            Msg::LeaseReply {
                sub,
                inst,
                generation,
                id,
                renewal: matches!(op, LeaseOp::Renew(_)),
                result,
            },
        );
    }

    /// Holds back a message for a paused instance; true when it was held.
    fn lease_deferred(&mut self, sub: usize, inst: usize, msg: &Msg) -> bool {
        let now = self.now();
        let Some(i) = self.leased(sub).map(|l| &mut l.instances[inst]) else {
            return false;
        };
        match i.paused_until {
            Some(until) if now <= until => {
                let at = until.saturating_add(Duration::from_micros(1));
                let copy = match *msg {
                    Msg::LeaseWake { sub, inst, generation } => Msg::LeaseWake { sub, inst, generation },
                    Msg::LeaseReply {
                        sub,
                        inst,
                        generation,
                        id,
                        renewal,
                        ref result,
                    } => Msg::LeaseReply {
                        sub,
                        inst,
                        generation,
                        id,
                        renewal,
                        result: result.clone(),
                    },
                    _ => return false,
                };
                self.lease_push(at, copy);
                true
            }
            Some(_) => {
                i.paused_until = None;
                false
            }
            None => false,
        }
    }

    pub(super) fn on_lease_reply(&mut self, msg: Msg) {
        let Msg::LeaseReply {
            sub,
            inst,
            generation,
            id,
            renewal,
            ref result,
        } = msg
        else {
            return;
        };
        if self.lease_deferred(sub, inst, &msg) {
            return;
        }
        let now = self.now();
        let Some(l) = self.leased(sub) else { return };
        let i = &mut l.instances[inst];
        if i.generation != generation {
            return;
        }
        let Some(machine) = i.machine.as_mut() else { return };
        if renewal {
            let answer = result.clone().map(|_| ());
            i.refused = answer == Err(LeaseFailure::Lost);
            machine.on_renewed(id, answer, now);
        } else {
            machine.on_acquired(id, result.clone(), now);
        }
        self.lease_pump(sub, inst);
    }

    pub(super) fn on_lease_wake(&mut self, msg: Msg) {
        let Msg::LeaseWake { sub, inst, generation } = msg else {
            return;
        };
        if self.lease_deferred(sub, inst, &msg) {
            return;
        }
        let now = self.now();
        let Some(l) = self.leased(sub) else { return };
        let i = &mut l.instances[inst];
        if i.generation != generation || i.wake.is_none_or(|w| w > now) {
            return;
        }
        i.wake = None;
        let Some(machine) = i.machine.as_mut() else { return };
        machine.on_wake(now);
        self.lease_pump(sub, inst);
    }

    /// A write carrying `token` reaches the checkpoint store: refused when
    /// the fence moved past it; accepted writes must carry the current token.
    pub(super) fn fence_accepts(&mut self, sub: usize, token: LeaseToken, paused: bool) -> bool {
        let Some(l) = self.leased(sub) else { return true };
        let (fence, current) = (l.fence, l.token);
        if token.get() < fence {
            self.coverage.hit("lease_stale_write_fenced");
            if paused {
                self.coverage.hit("lease_paused_holder_fenced");
            }
            self.log(format_args!("s{sub} write with {token} refused: fenced at {fence}"));
            return false;
        }
        if token.get() != current {
            self.violation(
                Invariant::Fencing,
                format!(
                    "{}: a write with {token} was accepted while the current token is {current}",
                    self.subscribers[sub].record.name
                ),
            );
        }
        true
    }

    /// Whether the holder pauses before this write: if so, until when.
    pub(super) fn maybe_pause(&mut self, sub: usize) -> Option<Time> {
        let (rate, ttl, inst) = {
            let l = self.subscribers[sub].lease.as_ref()?;
            (l.pause, l.policy.ttl, l.runner?.0)
        };
        if !self.lease_fault(rate) {
            return None;
        }
        let ttl_us = ttl.as_micros() as u64;
        let pause = Duration::from_micros(ttl_us + ttl_us / 2 + self.lease_faults.between(0, 2 * ttl_us));
        let until = self.now().saturating_add(pause);
        if let Some(l) = self.leased(sub) {
            l.instances[inst].paused_until = Some(until);
        }
        self.coverage.hit("lease_holder_paused");
        self.log(format_args!("s{sub}/i{inst} PAUSES for {pause:?} before its write"));
        Some(until)
    }

    /// The token the current run writes with (`None`: not leased).
    pub(super) fn run_token(&self, sub: usize) -> Option<LeaseToken> {
        self.subscribers[sub].lease.as_ref()?.runner.map(|(_, t)| t)
    }

    /// After a clock jump: counts every held lease whose validity it passed.
    pub(super) fn lease_clock_jumped(&mut self) {
        let now = self.now();
        let passed = self
            .subscribers
            .iter()
            .filter_map(|s| s.lease.as_ref())
            .flat_map(|l| l.instances.iter())
            .filter_map(|i| i.machine.as_ref()?.valid_until())
            .filter(|v| *v <= now)
            .count();
        self.coverage.add("lease_clock_jump", passed as u64);
    }

    /// Crashes the instance running the subscription (or the first one up).
    pub(super) fn lease_crash(&mut self, sub: usize) -> bool {
        let Some(l) = self.leased(sub) else { return false };
        let inst = l
            .runner
            .map(|(r, _)| r)
            .or_else(|| l.instances.iter().position(|i| i.machine.is_some()));
        let Some(inst) = inst else { return false };
        if l.instances[inst].machine.take().is_none() {
            return false;
        }
        self.log(format_args!("s{sub}/i{inst} CRASH"));
        self.lease_gone(sub, inst);
        true
    }

    /// Restarts every crashed instance; true if one was.
    pub(super) fn lease_restart(&mut self, sub: usize) -> bool {
        let down: Vec<usize> = match self.subscribers[sub].lease.as_ref() {
            Some(l) => (0..l.instances.len())
                .filter(|&i| l.instances[i].machine.is_none())
                .collect(),
            None => return false,
        };
        for &inst in &down {
            self.start_instance(sub, inst);
        }
        !down.is_empty()
    }

    /// Shuts every instance down (releasing a held lease).
    pub(super) fn lease_shutdown(&mut self, sub: usize) {
        let now = self.now();
        let count = self.leased(sub).map_or(0, |l| l.instances.len());
        for inst in 0..count {
            if let Some(m) = self.leased(sub).and_then(|l| l.instances[inst].machine.as_mut()) {
                m.on_shutdown(now);
            }
            self.lease_pump(sub, inst);
        }
    }
}
