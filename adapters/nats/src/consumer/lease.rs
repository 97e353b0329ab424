//! Partition leases and group membership in a JetStream key-value bucket.
//!
//! Keys, under the group's key prefix `{group}`:
//! - `{group}.members.{worker}`: a live worker; renewed (put) every
//!   heartbeat, gone when it expires (the bucket's max age is the lease TTL)
//!   or when the worker leaves (its subject is purged).
//! - `{group}.leases.{partition}`: the worker that owns a partition. Claimed
//!   with `create` (only when absent or deleted), renewed with a
//!   compare-and-set `update` on the revision the owner last wrote, gone when
//!   it expires or is released (purged). A renewal that meets another
//!   revision means the lease was lost.

use std::collections::{BTreeSet, HashMap};

use async_nats::jetstream;
use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use async_nats::jetstream::response::Response;
use bytes::Bytes;
use orchestrix::Result;

use crate::error::client;

/// What the bucket says about the group right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GroupView {
    /// Live workers (membership keys present).
    pub members: BTreeSet<String>,
    /// Partitions with a lease key present (held, or released with a delete
    /// marker that has not expired yet).
    pub leased: BTreeSet<u32>,
}

/// The part of a stream-info reply that lists subjects.
#[derive(Debug, serde::Deserialize)]
struct InfoWithSubjects {
    state: SubjectState,
}

#[derive(Debug, serde::Deserialize)]
struct SubjectState {
    #[serde(default)]
    subjects: Option<HashMap<String, u64>>,
}

/// The outcome of a renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewal {
    /// Still ours, at this new revision.
    Renewed(u64),
    /// Someone else holds it (or it expired and was taken).
    Lost,
}

/// Lease operations of one worker in one group.
#[derive(Debug, Clone)]
pub(crate) struct Leases {
    js: jetstream::Context,
    kv: kv::Store,
    bucket: String,
    group_key: String,
    worker: String,
}

impl Leases {
    pub(crate) fn new(
        js: jetstream::Context,
        kv: kv::Store,
        bucket: String,
        group_key: String,
        worker: String,
    ) -> Self {
        Self {
            js,
            kv,
            bucket,
            group_key,
            worker,
        }
    }

    fn member_key(&self) -> String {
        format!("{}.members.{}", self.group_key, self.worker)
    }

    fn lease_key(&self, partition: u32) -> String {
        format!("{}.leases.{partition}", self.group_key)
    }

    fn subject(&self, key: &str) -> String {
        format!("$KV.{}.{key}", self.bucket)
    }

    /// Writes (or refreshes) this worker's membership key.
    pub(crate) async fn heartbeat(&self, owned: &[u32]) -> Result<()> {
        let value = serde_json::json!({ "worker": self.worker, "pid": std::process::id(), "partitions": owned });
        self.kv
            .put(self.member_key(), Bytes::from(value.to_string()))
            .await
            .map(|_| ())
            .map_err(|e| {
                client(
                    "lease",
                    true,
                    format!("membership heartbeat of `{}`", self.worker),
                    e,
                )
            })
    }

    /// Live members and present lease keys, in one stream-info request.
    pub(crate) async fn view(&self) -> Result<GroupView> {
        let filter = self.subject(&format!("{}.>", self.group_key));
        let response: Response<InfoWithSubjects> = self
            .js
            .request(
                format!("STREAM.INFO.KV_{}", self.bucket),
                &serde_json::json!({ "subjects_filter": filter }),
            )
            .await
            .map_err(|e| {
                client(
                    "lease",
                    true,
                    format!("list keys of group `{}`", self.group_key),
                    e,
                )
            })?;
        let info = match response {
            Response::Ok(info) => info,
            Response::Err { error } => {
                return Err(client(
                    "lease",
                    true,
                    format!("list keys of group `{}`", self.group_key),
                    error,
                ));
            }
        };
        let subjects = info.state.subjects.unwrap_or_default();
        let members_prefix = self.subject(&format!("{}.members.", self.group_key));
        let leases_prefix = self.subject(&format!("{}.leases.", self.group_key));
        let mut view = GroupView::default();
        for subject in subjects.keys() {
            if let Some(worker) = subject.strip_prefix(&members_prefix) {
                view.members.insert(worker.to_owned());
            } else if let Some(p) = subject
                .strip_prefix(&leases_prefix)
                .and_then(|p| p.parse().ok())
            {
                view.leased.insert(p);
            }
        }
        Ok(view)
    }

    /// Tries to claim a partition: `Some(revision)` when it is now ours,
    /// `None` when another worker holds it.
    pub(crate) async fn claim(&self, partition: u32) -> Result<Option<u64>> {
        match self
            .kv
            .create(self.lease_key(partition), Bytes::from(self.worker.clone()))
            .await
        {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if matches!(e.kind(), CreateErrorKind::AlreadyExists) => Ok(None),
            Err(e) => Err(client(
                "lease",
                true,
                format!("claim partition {partition}"),
                e,
            )),
        }
    }

    /// Renews a lease held at `revision`.
    pub(crate) async fn renew(&self, partition: u32, revision: u64) -> Result<Renewal> {
        match self
            .kv
            .update(
                self.lease_key(partition),
                Bytes::from(self.worker.clone()),
                revision,
            )
            .await
        {
            Ok(revision) => Ok(Renewal::Renewed(revision)),
            Err(e) if matches!(e.kind(), UpdateErrorKind::WrongLastRevision) => {
                // A renewal whose reply was lost may have been stored: the
                // key then still names this worker, at a newer revision.
                match self.kv.entry(self.lease_key(partition)).await {
                    Ok(Some(entry))
                        if entry.operation == kv::Operation::Put
                            && entry.value == self.worker.as_bytes()
                            && entry.revision != revision =>
                    {
                        match self
                            .kv
                            .update(
                                self.lease_key(partition),
                                Bytes::from(self.worker.clone()),
                                entry.revision,
                            )
                            .await
                        {
                            Ok(revision) => Ok(Renewal::Renewed(revision)),
                            Err(_) => Ok(Renewal::Lost),
                        }
                    }
                    _ => Ok(Renewal::Lost),
                }
            }
            Err(e) => Err(client(
                "lease",
                true,
                format!("renew partition {partition}"),
                e,
            )),
        }
    }

    /// Gives a lease up at once (its key vanishes, so another worker can
    /// claim it on its next round). Call only while the lease is surely ours.
    pub(crate) async fn release(&self, partition: u32) -> Result<()> {
        self.purge(self.lease_key(partition)).await
    }

    /// Removes this worker's membership key.
    pub(crate) async fn leave(&self) -> Result<()> {
        self.purge(self.member_key()).await
    }

    async fn purge(&self, key: String) -> Result<()> {
        self.kv
            .stream
            .purge()
            .filter(self.subject(&key))
            .await
            .map(|_| ())
            .map_err(|e| client("lease", true, format!("purge key `{key}`"), e))
    }
}

/// The partitions a worker prefers, starting at a worker-specific offset so
/// that workers starting together do not all contend for partition 0.
pub(crate) fn preferred_order(worker: &str, partitions: u32) -> Vec<u32> {
    let start = orchestrix::runtime::partition_for(worker, partitions);
    (0..partitions).map(|i| (start + i) % partitions).collect()
}

/// How many partitions each worker aims for: `ceil(partitions / members)`.
pub(crate) fn target(partitions: u32, members: usize) -> usize {
    let members = members.max(1);
    let partitions = partitions as usize;
    partitions.div_ceil(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_cover_every_partition() {
        assert_eq!(target(8, 3), 3);
        assert_eq!(target(8, 0), 8);
        assert_eq!(target(6, 3), 2);
        assert_eq!(target(2, 5), 1);
        for p in 1..40u32 {
            for n in 1..10usize {
                assert!(target(p, n) * n >= p as usize);
            }
        }
    }

    #[test]
    fn preferred_order_is_a_rotation() {
        let order = preferred_order("worker-a", 8);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..8).collect::<Vec<_>>());
        assert!(order.windows(2).all(|w| w[1] == (w[0] + 1) % 8));
    }
}
