//! The phases of a run: setup, the safety phase's scheduled faults, healing
//! and the liveness phase's resolution of unknown outcomes.

use super::{Msg, World};
use crate::exec::SimStep;
use crate::faults::FaultPlan;
use crate::history::{Attempt, ExecutionOutcome, ExecutionRecord};
use eventcore::{ExecutionContext, ExecutionPolicy};
use std::time::Duration;

/// Scheduled faults land in this window after the start.
const FAULT_WINDOW_US: u64 = 2_000_000;
/// Heal no later than this, whatever the clients are doing.
const SAFETY_CAP: Duration = Duration::from_secs(120);

impl World {
    /// Opens the accounts and lists the products, fault-free, before the
    /// clients start. Recorded in the history like any other command.
    pub(super) fn setup(&mut self) {
        for job in self.workload.take_setup() {
            let command = self.new_command(0, job);
            let now = self.now();
            let seed = self.sched.next_u64();
            let started_after = self.store.last_position();
            let entry = &self.commands[command];
            let mut machine = entry.job.start(
                ExecutionPolicy::default(),
                ExecutionContext::new(entry.command_id),
                now,
                seed,
            );
            let mut record = ExecutionRecord {
                started_after,
                healed: false,
                attempts: Vec::new(),
                outcome: ExecutionOutcome::Running,
            };
            loop {
                match machine.poll() {
                    SimStep::Read(read) => {
                        let result = self.store.read(&read);
                        machine.on_read(read.id, result, now);
                    }
                    SimStep::Append(append) => {
                        record.attempts.push(Attempt::of(&append));
                        let before = self.store.last_position().get() as usize;
                        let result = self.store.append(&append);
                        let after = self.store.last_position().get() as usize;
                        if after > before {
                            self.checker.observe_batch(&self.store.data().events()[before..after]);
                        }
                        machine.on_append(append.id, result, now);
                    }
                    SimStep::Wait(until) => machine.on_wake(until),
                    SimStep::Done(settled) => {
                        record.outcome = settled.outcome;
                        break;
                    }
                    SimStep::Finished => break,
                }
            }
            let label = self.commands[command].job.label().to_owned();
            let ok = if matches!(record.outcome, ExecutionOutcome::Acknowledged(_)) {
                "ok"
            } else {
                "FAILED"
            };
            self.log(format_args!("setup {label}: {ok}"));
            self.commands[command].executions.push(record);
        }
        if !self.checker.violations().is_empty() {
            self.failed = true;
        }
    }

    pub(super) fn schedule_safety_phase(&mut self) {
        let start = self.now();
        let at =
            |world: &mut World| start.saturating_add(Duration::from_micros(world.faults.between(0, FAULT_WINDOW_US)));
        for _ in 0..self.plan.store_restarts {
            let t = at(self);
            self.push(t, Msg::StoreDown);
        }
        for _ in 0..self.plan.clock_jumps {
            let t = at(self);
            let by = Duration::from_micros(self.faults.between(50_000, 4_000_000));
            self.push(t, Msg::ClockJump { by });
        }
        for _ in 0..self.plan.random_crashes {
            let t = at(self);
            let client = self.faults.below(self.clients.len() as u64) as usize;
            self.push(t, Msg::Crash { client, why: "random" });
        }
        for _ in 0..self.plan.subscriber_crashes {
            let t = at(self);
            if !self.subscribers.is_empty() {
                let sub = self.faults.below(self.subscribers.len() as u64) as usize;
                self.push(t, Msg::SubCrash { sub });
            }
        }
        for client in 0..self.clients.len() {
            let t = start.saturating_add(Duration::from_micros(self.sched.between(0, 1_000)));
            self.push(t, Msg::Think { client });
        }
        self.safety_cap = start.saturating_add(SAFETY_CAP);
    }

    pub(super) fn maybe_schedule_heal(&mut self) {
        if self.heal_scheduled || self.clients.iter().any(|c| c.remaining > 0) {
            return;
        }
        self.heal_scheduled = true;
        // Heal while commands are still in flight, not after they settle:
        // recovery must work from whatever state the faults left.
        let after = Duration::from_micros(self.faults.between(0, 300_000));
        let at = self.clock.after(after);
        self.push(at, Msg::Heal);
    }

    pub(super) fn store_down(&mut self) {
        if self.healed_at.is_some() || !self.store.is_up() {
            return;
        }
        self.store.crash();
        self.coverage.hit("store_restart");
        if !self.batch.is_empty() {
            // The open batch's transaction dies with its connection.
            self.coverage.hit("request_dropped_by_restart");
            self.log(format_args!(
                "open batch of {} appends lost: the store went down",
                self.batch.len()
            ));
            self.batch.clear();
        }
        self.log(format_args!("STORE DOWN (in-flight requests and responses lost)"));
        let down = Duration::from_micros(self.faults.between(10_000, 500_000));
        let at = self.clock.after(down);
        self.push(at, Msg::StoreUp);
    }

    pub(super) fn store_up(&mut self) {
        if !self.store.is_up() {
            self.store.restart();
            self.log(format_args!("store up"));
        }
    }

    pub(super) fn clock_jump(&mut self, by: Duration) {
        if self.healed_at.is_some() {
            return;
        }
        self.clock.jump(by);
        self.coverage.hit("clock_jump");
        self.lease_clock_jumped();
        self.log(format_args!("CLOCK JUMP +{by:?}"));
    }

    /// Faults stop: the store comes up, crashed clients restart, no new
    /// work is issued; after the network drains, unknown outcomes are
    /// resolved.
    pub(super) fn heal(&mut self) {
        if self.healed_at.is_some() {
            return;
        }
        self.healed_at = Some(self.now());
        // Healing removes the faults, not group commit: the store keeps
        // batching as it did.
        self.active = FaultPlan {
            batch_window_us: self.plan.batch_window_us,
            ..FaultPlan::healed(self.plan.policy.clone())
        };
        self.store_up();
        for client in &mut self.clients {
            client.up = true;
            client.remaining = 0;
        }
        self.log(format_args!("HEAL: faults off, store up, clients restarted"));
        for sub in 0..self.subscribers.len() {
            self.sub_restart(sub);
        }
        let at = self.clock.after(DRAIN_AFTER_HEAL);
        self.push(at, Msg::Resolve);
    }

    /// Re-executes, with its command id, every command whose last execution
    /// did not end definitively.
    pub(super) fn resolve(&mut self) {
        let pending: Vec<usize> = (0..self.commands.len())
            .filter(|&i| self.commands[i].running.is_none() && !self.commands[i].resolved())
            .collect();
        if !pending.is_empty() {
            self.log(format_args!("resolve: re-executing {} commands", pending.len()));
        }
        for command in pending {
            self.start_execution(command);
        }
        let open = self.commands.iter().any(|c| c.running.is_some() || !c.resolved());
        if !open && self.subscribers_caught_up() {
            // Nothing left to settle: stop the subscribers so the queue
            // drains and the run ends.
            self.shut_down_subscribers();
            return;
        }
        let at = self.clock.after(Duration::from_millis(250));
        self.push(at, Msg::Resolve);
    }
}

const DRAIN_AFTER_HEAL: Duration = super::DRAIN;
