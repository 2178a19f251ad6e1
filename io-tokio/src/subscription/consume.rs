//! The consuming loop while the lease is held: starts what the machine asks
//! for (fetch, deliver, save, park), waits on the fetch and the consumer side
//! by side, feeds every answer, notification, wake and shutdown back, and
//! renews the lease.

use super::dead_letters::RequestedReplays;
use super::lease::Hold;
use super::runner::mix;
use super::status::publish;
use super::{RunError, RunSummary, Runner, RunnerState, Sink};
use crate::metrics::{SubscriptionFailure, SubscriptionMetrics};
use crate::{DeadLetter, DeadLetterStore, EventStore, LeaseStore};
use eventcore::{
    Batch, ConsumerError, GlobalPosition, HandleError, ReadAllResponse, RequestId, StoreError, SubscriptionError,
    SubscriptionMachine, SubscriptionStep,
};
use std::future::Future;
use std::pin::Pin;
use tokio::sync::watch;
use tracing::Instrument;

impl<S: EventStore, K: Sink, L: LeaseStore, D: DeadLetterStore> Runner<S, K, L, D> {
    pub(super) async fn consume(
        &mut self,
        mut hold: Hold,
        shutdown: &mut Pin<&mut (impl Future<Output = ()> + Send)>,
        until_caught_up: bool,
    ) -> Result<RunSummary, RunError> {
        let checkpoint = self
            .sink
            .claim(&self.name, hold.lease().token)
            .await
            .map_err(RunError::Claim)?;
        let seed = mix(self.seed_base ^ self.runs);
        let mut machine = SubscriptionMachine::new(
            checkpoint,
            self.filter.clone(),
            self.policy.clone(),
            self.clock.now(),
            seed,
        );
        self.update(|s| {
            s.state = RunnerState::Running;
            s.token = Some(hold.lease().token);
            s.checkpoint = checkpoint;
            s.handled_through = checkpoint;
            s.caught_up = false;
        });

        let Runner {
            name,
            store,
            sink,
            leases,
            dead_letters,
            wakeups,
            status,
            clock,
            policy,
            ..
        } = self;
        let clock = *clock;
        // Replays an operator asked for: looked for at the start and then at
        // most once per poll interval, only while the consumer is idle.
        let mut requested = RequestedReplays {
            name,
            dead_letters: &*dead_letters,
            leases: &*leases,
            status: &*status,
            clock,
            every: policy.poll_interval,
            limit: usize::try_from(policy.batch_size.get()).unwrap_or(usize::MAX),
            next: clock.now(),
        };
        let mut observed = SubscriptionMetrics::new(name);
        observed.saw_head(checkpoint);
        let mut wakeups = wakeups.clone();
        if let Some(w) = wakeups.as_mut() {
            let head = *w.borrow_and_update();
            observed.saw_head(head);
            machine.on_head(head, clock.now());
        }

        // The sink is moved into the consumer future and handed back with
        // its result: at most one consumer operation is in flight, and the
        // borrow checker can see it.
        let mut idle_sink: Option<&mut K> = Some(sink);
        let mut fetch: Option<BoxFuture<'_, (RequestId, Result<ReadAllResponse, StoreError>)>> = None;
        let mut work: Option<BoxFuture<'_, (&mut K, Work)>> = None;
        let mut shutting_down = false;

        loop {
            // Between batches: replay the letters an operator asked for,
            // with the consumer idle (nothing delivered is in flight).
            if !shutting_down && requested.due() {
                if let Some(sink) = idle_sink.as_deref_mut() {
                    requested.run(sink, machine.checkpoint(), &mut hold).await?;
                }
            }
            // Start everything the machine asks for, until it waits.
            let until = loop {
                match machine.poll() {
                    SubscriptionStep::Fetch { id, request, .. } => {
                        let store = &*store;
                        fetch = Some(Box::pin(async move { (id, store.read_all(&request).await) }));
                    }
                    SubscriptionStep::Deliver(batch) => {
                        let Some(sink) = idle_sink.take() else {
                            return Err(internal("a delivery while the consumer is busy"));
                        };
                        observed.delivered(&batch.events, clock.now());
                        let span = batch_span(name, &batch);
                        work = Some(Box::pin(
                            async move {
                                let result = sink.handle(&batch).await;
                                (sink, Work::Handled(batch.id, result))
                            }
                            .instrument(span),
                        ));
                    }
                    SubscriptionStep::SaveCheckpoint { id, position } => {
                        let Some(sink) = idle_sink.take() else {
                            return Err(internal("a checkpoint save while the consumer is busy"));
                        };
                        work = Some(Box::pin(async move {
                            let result = sink.save(position).await.map_err(ConsumerError::from);
                            (sink, Work::Saved(id, result))
                        }));
                    }
                    SubscriptionStep::Park { id, event, poison } => {
                        let Some(sink) = idle_sink.take() else {
                            return Err(internal("a park while the consumer is busy"));
                        };
                        let letter = DeadLetter {
                            subscription: name.clone(),
                            event,
                            poison,
                            parked_at: clock.now(),
                            replay_requested_at: None,
                        };
                        let dead_letters = &*dead_letters;
                        work = Some(Box::pin(async move {
                            tracing::warn!(subscription = %letter.subscription, poison = %letter.poison, "parking poison event");
                            let result = dead_letters.park(letter).await.map_err(ConsumerError::from);
                            (sink, Work::Parked(id, result))
                        }));
                    }
                    SubscriptionStep::Wait { until } => break until,
                    SubscriptionStep::Stopped(outcome) => {
                        let stats = machine.stats().clone();
                        publish(status, &machine, false);
                        return match outcome {
                            Ok(checkpoint) => Ok(RunSummary {
                                checkpoint: Some(checkpoint),
                                stats,
                            }),
                            Err(error) => Err(error.into()),
                        };
                    }
                    SubscriptionStep::Finished => {
                        return Err(internal("subscription machine polled after it stopped"));
                    }
                }
            };
            let caught_up = machine.is_caught_up();
            publish(status, &machine, caught_up);
            observed.progress(machine.handled_through(), caught_up);
            if until_caught_up && caught_up && !shutting_down {
                shutting_down = true;
                machine.on_shutdown(clock.now());
                fetch = None;
                continue;
            }

            let input = tokio::select! {
                biased;
                () = shutdown.as_mut(), if !shutting_down => Input::Shutdown,
                done = poll_slot(&mut work) => Input::Work(done),
                (id, result) = poll_slot(&mut fetch) => Input::Fetched(id, result),
                changed = changed(&mut wakeups) => Input::Notified(changed),
                () = tokio::time::sleep_until(clock.instant_at(hold.wake_at())) => Input::Renew,
                () = tokio::time::sleep_until(clock.instant_at(until)), if until != eventcore::Time::MAX => Input::Wake,
                () = tokio::time::sleep_until(clock.instant_at(requested.next)), if idle_sink.is_some() && !shutting_down => Input::LookForReplays,
            };
            let now = clock.now();
            match input {
                Input::Shutdown => {
                    shutting_down = true;
                    fetch = None;
                    machine.on_shutdown(now);
                }
                Input::Work((sink, done)) => {
                    work = None;
                    idle_sink = Some(sink);
                    match done {
                        Work::Handled(id, result) => {
                            if let Err(error) = &result {
                                observed.failed(SubscriptionFailure::Handle);
                                tracing::warn!(subscription = %name, error = error as &dyn std::error::Error, "batch failed");
                            }
                            machine.on_handled(id, result, now);
                        }
                        Work::Saved(id, result) => {
                            if let Err(error) = &result {
                                observed.failed(SubscriptionFailure::Checkpoint);
                                tracing::warn!(subscription = %name, error = error as &dyn std::error::Error, "checkpoint save failed");
                            }
                            machine.on_checkpoint_saved(id, result, now);
                        }
                        Work::Parked(id, result) => {
                            if let Err(error) = &result {
                                observed.failed(SubscriptionFailure::Park);
                                tracing::error!(subscription = %name, error = error as &dyn std::error::Error, "parking a poison event failed");
                            }
                            machine.on_parked(id, result, now);
                        }
                    }
                }
                Input::Fetched(id, result) => {
                    fetch = None;
                    match &result {
                        Ok(answer) => {
                            observed.saw_head(answer.complete_through);
                            if let Some(last) = answer.events.last() {
                                observed.saw_head(last.position);
                            }
                        }
                        Err(error) => {
                            observed.failed(SubscriptionFailure::Fetch);
                            tracing::warn!(subscription = %name, error = error as &dyn std::error::Error, "fetch from the log failed");
                        }
                    }
                    machine.on_fetched(id, result, now);
                    let skipped = machine.take_skipped();
                    if !skipped.is_empty() {
                        for range in &skipped {
                            tracing::warn!(
                                subscription = %name,
                                range = %range,
                                events = range.events(),
                                "skipping events removed by retention: the subscription never saw them"
                            );
                        }
                        observed.skipped(&skipped);
                        status.send_modify(|s| s.last_skipped = skipped.last().cloned());
                    }
                }
                Input::Notified(open) => match wakeups.as_mut() {
                    Some(rx) if open => {
                        let head = *rx.borrow_and_update();
                        observed.saw_head(head);
                        machine.on_head(head, now);
                    }
                    _ => {
                        // The notifier is gone: poll at the interval.
                        wakeups = None;
                        machine.on_notified(now);
                    }
                },
                Input::Renew => hold.on_wake(&*leases, clock).await?,
                Input::Wake => machine.on_wake(now),
                // Looked for at the top of the loop.
                Input::LookForReplays => {}
            }
        }
    }
}

/// The span of one batch handed to the consumer (a subscriber, or a
/// projection's transaction), carrying the subscription's name.
fn batch_span(name: &str, batch: &Batch) -> tracing::Span {
    tracing::info_span!(
        "subscription.batch",
        subscription = %name,
        events = batch.events.len(),
        first = batch.events.first().map(|e| e.position.get()),
        last = batch.last_position().map(|p| p.get()),
        checkpoint = batch.checkpoint.get(),
    )
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

enum Work {
    Handled(RequestId, Result<(), HandleError>),
    Saved(RequestId, Result<(), ConsumerError>),
    Parked(RequestId, Result<(), ConsumerError>),
}

enum Input<'a, K> {
    Shutdown,
    Work((&'a mut K, Work)),
    Fetched(RequestId, Result<ReadAllResponse, StoreError>),
    Notified(bool),
    Renew,
    Wake,
    LookForReplays,
}

async fn poll_slot<F: Future + Unpin>(slot: &mut Option<F>) -> F::Output {
    match slot {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// Completes when the head moved (`true`) or the sender is gone (`false`);
/// never without a receiver.
async fn changed(wakeups: &mut Option<watch::Receiver<GlobalPosition>>) -> bool {
    match wakeups {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

fn internal(message: &str) -> RunError {
    RunError::Subscription(SubscriptionError::Consumer {
        attempts: 1,
        last: ConsumerError::Permanent(format!("runner bug: {message}")),
    })
}
