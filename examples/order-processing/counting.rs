//! An event store wrapper that counts what commands read, per stream: how a
//! run shows that views started from snapshots read only the tail of a
//! stream.

use eventcore::{
    AppendReceipt, AppendRequest, ReadAllRequest, ReadAllResponse, ReadRequest, ReadResponse, StoreError, StreamId,
};
use eventcore_tokio::EventStore;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// What commands read from one stream during this run.
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamReads {
    /// The stream's length at the first read.
    pub length_at_first_read: u64,
    /// Events returned by the first read (the cold start).
    pub first_read: u64,
    /// Events returned by every read of the stream.
    pub events: u64,
}

/// Delegates to `inner`, counting the events each `read` returns per stream.
#[derive(Clone, Debug)]
pub struct CountingStore<S> {
    inner: S,
    reads: Arc<Mutex<BTreeMap<StreamId, StreamReads>>>,
}

impl<S> CountingStore<S> {
    pub fn new(inner: S) -> Self {
        CountingStore {
            inner,
            reads: Arc::default(),
        }
    }

    /// What was read so far, per stream.
    pub fn reads(&self) -> BTreeMap<StreamId, StreamReads> {
        self.reads.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn count(&self, response: &ReadResponse) {
        let Ok(mut reads) = self.reads.lock() else { return };
        for slice in &response.streams {
            let events = slice.events.len() as u64;
            let entry = reads.entry(slice.stream.clone()).or_insert(StreamReads {
                length_at_first_read: slice.head.get(),
                first_read: events,
                events: 0,
            });
            entry.events += events;
        }
    }
}

impl<S: EventStore> EventStore for CountingStore<S> {
    async fn read(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        let response = self.inner.read(request).await?;
        self.count(&response);
        Ok(response)
    }

    fn append(&self, request: &AppendRequest) -> impl Future<Output = Result<AppendReceipt, StoreError>> + Send {
        self.inner.append(request)
    }

    fn read_all(&self, request: &ReadAllRequest) -> impl Future<Output = Result<ReadAllResponse, StoreError>> + Send {
        self.inner.read_all(request)
    }

    fn append_batch(
        &self,
        requests: &[AppendRequest],
    ) -> impl Future<Output = Vec<Result<AppendReceipt, StoreError>>> + Send {
        self.inner.append_batch(requests)
    }
}
