//! The executor's view cache with discovery: a command whose declared
//! stream is cached decides at once, and the streams that decision discovers
//! are started from the cache too, so a warm command reads nothing at all.

use eventcore::{require, Command, Decide, Emit, Event, ReadRequest, ReadResponse, StoreError, StreamId, View};
use eventcore_tokio::{EventStore, Executor, MemoryEventStore};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Serialize, Deserialize)]
enum TeamEvent {
    Joined { member: String },
}
impl Event for TeamEvent {}

#[derive(Debug, Serialize, Deserialize)]
enum PointsEvent {
    Scored { points: u64 },
}
impl Event for PointsEvent {}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Team {
    members: Vec<String>,
}

impl View for Team {
    type Event = TeamEvent;
    const NAME: &'static str = "test.team";
    fn apply(&mut self, event: &TeamEvent) {
        let TeamEvent::Joined { member } = event;
        self.members.push(member.clone());
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Points(u64);

impl View for Points {
    type Event = PointsEvent;
    const NAME: &'static str = "test.points";
    fn apply(&mut self, event: &PointsEvent) {
        let PointsEvent::Scored { points } = event;
        self.0 += points;
    }
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
struct Refused;

fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("valid stream id")
}

/// Adds a member to a team.
#[derive(Command)]
struct Join {
    #[stream(Team)]
    team: StreamId,
    member: String,
}

impl Decide for Join {
    type Error = Refused;
    fn decide(&self, _: &JoinState<'_>, out: &mut Emit<'_>) -> Result<(), Refused> {
        out.emit(
            &self.team,
            TeamEvent::Joined {
                member: self.member.clone(),
            },
        );
        Ok(())
    }
}

/// Gives every member of a team a point: reads the team, discovers its
/// members' streams, then writes one event to each (two event types, one
/// atomic append).
#[derive(Command)]
struct Reward {
    #[stream(Team)]
    team: StreamId,
}

impl Decide for Reward {
    type Error = Refused;
    fn decide(&self, state: &RewardState<'_>, out: &mut Emit<'_>) -> Result<(), Refused> {
        require!(!state.team.members.is_empty(), Refused);
        let members: Vec<StreamId> = state.team.members.iter().map(|m| stream(m)).collect();
        let unread: Vec<&StreamId> = members
            .iter()
            .filter(|m| state.views.get::<Points>(m).is_none())
            .collect();
        if !unread.is_empty() {
            for member in unread {
                out.read::<Points>(member.clone());
            }
            return Ok(());
        }
        for member in &members {
            out.emit(member, PointsEvent::Scored { points: 1 });
        }
        Ok(())
    }
}

/// Counts the events `read` returns.
#[derive(Clone)]
struct Counting {
    inner: MemoryEventStore,
    read: Arc<AtomicU64>,
}

impl EventStore for Counting {
    async fn read(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        let response = self.inner.read(request).await?;
        let events: usize = response.streams.iter().map(|s| s.events.len()).sum();
        self.read.fetch_add(events as u64, Ordering::Relaxed);
        Ok(response)
    }
    async fn append(&self, request: &eventcore::AppendRequest) -> Result<eventcore::AppendReceipt, StoreError> {
        self.inner.append(request).await
    }
    async fn read_all(&self, request: &eventcore::ReadAllRequest) -> Result<eventcore::ReadAllResponse, StoreError> {
        self.inner.read_all(request).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_discovered_by_a_decision_on_cached_views_start_from_the_cache() {
    let store = Counting {
        inner: MemoryEventStore::new(),
        read: Arc::default(),
    };
    let executor = Executor::new(store.clone());
    let team = stream("team-1");
    for member in ["ada", "bob", "cy"] {
        executor
            .execute(Join {
                team: team.clone(),
                member: member.to_owned(),
            })
            .await
            .expect("join");
    }
    // The first reward reads the members' (empty) streams once.
    let first = executor.execute(Reward { team: team.clone() }).await.expect("reward");
    assert_eq!(first.stats.discovery_rounds, 1);
    let reads_before = first.stats.reads;
    store.read.store(0, Ordering::Relaxed);

    // Warm: the team view is cached, the decision discovers the members, and
    // their views come from the cache too.
    let warm = executor.execute(Reward { team: team.clone() }).await.expect("reward");
    assert_eq!(
        warm.stats.reads, 0,
        "first reward made {reads_before} reads; {:?}",
        warm.stats
    );
    assert_eq!(store.read.load(Ordering::Relaxed), 0, "no event read");
    assert_eq!(warm.appended.map(|r| r.streams.len()), Some(3), "one point per member");

    // A fresh executor without a cache folds everything and agrees.
    let cold = Executor::new(store.clone()).with_view_cache(None);
    let third = cold.execute(Reward { team }).await.expect("reward");
    assert!(third.stats.reads >= 2, "{:?}", third.stats);
    let request = ReadRequest {
        streams: ["ada", "bob", "cy"]
            .iter()
            .map(|m| eventcore::StreamRead {
                stream: stream(m),
                after: eventcore::StreamVersion::NONE,
            })
            .collect(),
        page_size: None,
    };
    let heads = store.inner.read(&request).await.expect("read");
    for slice in heads.streams {
        assert_eq!(slice.head.get(), 3, "{} scored three times", slice.stream);
    }
}

/// Writes a points event to a team stream: not something the team's view
/// can fold.
#[derive(Command)]
struct Misfile {
    #[stream(Team)]
    team: StreamId,
}

impl Decide for Misfile {
    type Error = Refused;
    fn decide(&self, _: &MisfileState<'_>, out: &mut Emit<'_>) -> Result<(), Refused> {
        out.emit(&self.team, PointsEvent::Scored { points: 1 });
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_streams_view_cannot_fold_is_refused_before_anything_is_stored() {
    let store = MemoryEventStore::new();
    let executor = Executor::new(store.clone());
    let team = stream("team-misfiled");
    executor
        .execute(Join {
            team: team.clone(),
            member: "ada".to_owned(),
        })
        .await
        .expect("join");
    let refused = executor.execute(Misfile { team: team.clone() }).await;
    match refused {
        Err(eventcore::ExecutionError {
            error: eventcore::CommandError::ViewCannotFold { stream, view, .. },
            ..
        }) => {
            assert_eq!(stream, team);
            assert_eq!(view.name(), Team::NAME);
        }
        other => panic!("expected ViewCannotFold, got {other:?}"),
    }
    let request = ReadRequest {
        streams: vec![eventcore::StreamRead {
            stream: team,
            after: eventcore::StreamVersion::NONE,
        }],
        page_size: None,
    };
    let read = store.read(&request).await.expect("read");
    assert_eq!(read.streams[0].head.get(), 1, "only the join is stored");
}
