//! The tracing spans an operator sees: a command's span with its store
//! operations inside it, and a subscription's batches carrying the
//! subscription's name, collected by a `tracing-subscriber` layer.

use eventcore::{Batch, Command, Decision, Event, HandleError, StreamId};
use eventcore_tokio::{Executor, MemoryCheckpointStore, MemoryEventStore, Runner, Subscriber};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[derive(Serialize, Deserialize)]
enum Ev {
    Opened,
}
impl Event for Ev {}

#[derive(Debug, thiserror::Error)]
#[error("already open")]
struct AlreadyOpen;

struct Open(StreamId);
impl Command for Open {
    type Event = Ev;
    type State = bool;
    type Error = AlreadyOpen;
    fn streams(&self) -> Vec<StreamId> {
        vec![self.0.clone()]
    }
    fn apply(&self, open: &mut bool, _: &StreamId, _: &Ev) {
        *open = true;
    }
    fn decide(&self, open: &bool, out: &mut Decision<Ev>) -> Result<(), AlreadyOpen> {
        if *open {
            return Err(AlreadyOpen);
        }
        out.emit(&self.0, Ev::Opened);
        Ok(())
    }
}

struct Ignore;
impl Subscriber for Ignore {
    async fn handle(&mut self, _: &Batch) -> Result<(), HandleError> {
        Ok(())
    }
}

/// One span as it was opened: its name, its fields, and its parent's name.
#[derive(Clone, Debug)]
struct Opened {
    name: &'static str,
    fields: BTreeMap<String, String>,
    parent: Option<&'static str>,
}

/// Collects every span opened.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Opened>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);
impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let parent = ctx.span(id).and_then(|span| span.parent()).map(|p| p.name());
        let opened = Opened {
            name: attrs.metadata().name(),
            fields,
            parent,
        };
        self.0.lock().expect("span log").push(opened);
    }
}

impl Spans {
    fn named(&self, name: &str) -> Vec<Opened> {
        let all = self.0.lock().expect("span log");
        all.iter().filter(|s| s.name == name).cloned().collect()
    }
}

/// Runs `test` on a current-thread runtime with the collecting layer as
/// this thread's subscriber.
fn collecting(test: impl AsyncFnOnce()) -> Spans {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    tracing::subscriber::with_default(subscriber, || runtime.block_on(test()));
    spans
}

#[test]
fn a_command_span_holds_its_store_operations() {
    let spans = collecting(async || {
        let executor = Executor::new(MemoryEventStore::new());
        executor
            .execute(Open(StreamId::new("acc-1").expect("valid")))
            .await
            .expect("opens");
    });
    let commands = spans.named("command");
    assert_eq!(commands.len(), 1, "one command span: {commands:?}");
    assert_eq!(commands[0].fields.get("command").map(String::as_str), Some("Open"));
    assert!(commands[0].fields.contains_key("command_id"));

    let reads = spans.named("store.read");
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(reads[0].parent, Some("command"), "the read runs inside the command");
    assert_eq!(reads[0].fields.get("operation").map(String::as_str), Some("read"));
    assert_eq!(reads[0].fields.get("streams").map(String::as_str), Some("1"));

    let appends = spans.named("store.append");
    assert_eq!(appends.len(), 1, "{appends:?}");
    assert_eq!(appends[0].parent, Some("command"), "the append runs inside the command");
    assert_eq!(appends[0].fields.get("events").map(String::as_str), Some("1"));
}

#[test]
fn a_subscription_batch_span_carries_the_subscription_name() {
    let spans = collecting(async || {
        let store = MemoryEventStore::new();
        let executor = Executor::new(store.clone());
        for n in 0..2 {
            let account = StreamId::new(format!("acc-{n}")).expect("valid");
            executor.execute(Open(account)).await.expect("opens");
        }
        let mut runner = Runner::subscription("audit", store.clone(), MemoryCheckpointStore::new(), Ignore);
        runner.run_until_caught_up().await.expect("catches up");
    });
    let batches = spans.named("subscription.batch");
    assert!(!batches.is_empty(), "at least one batch span");
    for batch in &batches {
        assert_eq!(batch.fields.get("subscription").map(String::as_str), Some("audit"));
        assert_eq!(batch.parent, Some("subscription"), "inside the runner's span");
    }
    let events: u64 = batches
        .iter()
        .map(|b| b.fields.get("events").and_then(|e| e.parse::<u64>().ok()).unwrap_or(0))
        .sum();
    assert_eq!(events, 2, "the batches carry both events");

    let runs = spans.named("subscription");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].fields.get("subscription").map(String::as_str), Some("audit"));
    let fetches = spans.named("store.read_all");
    assert!(!fetches.is_empty(), "the fetches are store operations");
    assert!(
        fetches.iter().all(|f| f.parent == Some("subscription")),
        "every fetch runs inside the runner's span: {fetches:?}"
    );
}
