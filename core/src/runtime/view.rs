//! Typed projections: a [`View`] declares the domain events it handles (its
//! [`View::Event`] enum, from `#[derive(Event)]`) and how one row of its read
//! model changes with each; the framework decodes, finds the row, keeps it in
//! a [`ReadModelStore`], skips redelivered events by stream revision, and
//! resets the read model for a rebuild.
//!
//! ```
//! use orchestrix::{Application, Event, EventRecord, RecordedEvent, Store, View};
//! use orchestrix::runtime::Runtime;
//! use orchestrix::store::ExpectedRevision;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, Serialize, Deserialize, Event)]
//! #[event(prefix = "com.acme.shop")]
//! enum CartEvent { Added { cents: u64 }, Emptied }
//!
//! #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
//! struct CartRow { items: u32, cents: u64 }
//!
//! #[derive(Debug)]
//! struct Carts;
//! impl View for Carts {
//!     const NAME: &'static str = "carts";
//!     type Event = CartEvent;
//!     type Row = CartRow;
//!     fn update(&self, row: &mut CartRow, event: &CartEvent, _: &RecordedEvent) {
//!         match event {
//!             CartEvent::Added { cents } => { row.items += 1; row.cents += cents; }
//!             CartEvent::Emptied => *row = CartRow::default(),
//!         }
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let app = Application::builder(Store::memory()).projection(Carts).build()?;
//! let running = Runtime::start(&app).await?;
//! let cart = orchestrix::StreamId::new("cart", "c1")?;
//! let added = || {
//!     let e = CartEvent::Added { cents: 250 };
//!     Ok::<_, orchestrix::Error>(EventRecord::json(e.event_type(), 1, &e.to_payload()?))
//! };
//! app.store().append(&cart, ExpectedRevision::NoStream, vec![added()?, added()?]).await?;
//! running.catch_up().await?;
//! let carts = app.read_model::<Carts>()?;
//! assert_eq!(carts.get("c1").await?, Some(CartRow { items: 2, cents: 500 }));
//! running.shutdown().await?;
//! # Ok::<(), orchestrix::Error>(()) }).unwrap();
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::projection::Projection;
use crate::error::{Error, Result};
use crate::event::{Event, RecordedEvent};
use crate::store::Filter;

/// A typed projection: one row per key (by default the stream's entity id),
/// changed by each of its events.
///
/// Implement [`update`](Self::update), register it with
/// [`ApplicationBuilder::projection`](crate::ApplicationBuilder::projection)
/// and query it through [`Application::read_model`](crate::Application::read_model).
/// See the [module documentation](self) for an example.
///
/// Delivery is at-least-once; the framework makes it idempotent by skipping
/// an event whose stream revision is at or below the last one applied from
/// that stream. `update` must not do I/O: it is a fold.
pub trait View: Send + Sync + fmt::Debug + 'static {
    /// A stable name: the checkpoint, dead-letter and read-model key. A new
    /// version of the read model needs a new name.
    const NAME: &'static str;

    /// The events it handles: every event type of this enum, and only those.
    type Event: Event;

    /// One row of the read model.
    type Row: Default + Clone + Serialize + DeserializeOwned + Send + Sync + fmt::Debug + 'static;

    /// The row an event changes; `None` ignores the event. The stream's
    /// entity id by default (one row per aggregate instance).
    fn key(&self, event: &Self::Event, recorded: &RecordedEvent) -> Option<String> {
        let _ = event;
        Some(recorded.stream_id.entity_id().to_owned())
    }

    /// Changes a row (a [`Default`] one for a new key) by one event.
    fn update(&self, row: &mut Self::Row, event: &Self::Event, recorded: &RecordedEvent);
}

/// One change to a row: given the stored row (if any), the new row.
pub type RowChange<'a> =
    &'a (dyn Fn(Option<serde_json::Value>) -> Result<serde_json::Value> + Send + Sync);

/// Where typed read models keep their rows, as JSON documents, together with
/// the last stream revision applied to each view (for idempotence).
///
/// [`MemoryReadModels`] is the in-process implementation and the default of
/// an [`ApplicationBuilder`](crate::ApplicationBuilder); choose another with
/// [`ApplicationBuilder::read_models`](crate::ApplicationBuilder::read_models):
/// `SqliteReadModels` (crate `orchestrix-sqlite`) or `PostgresReadModels`
/// (crate `orchestrix-postgres`). `orchestrix_testkit::read_model_conformance!`
/// is the contract every implementation passes.
#[async_trait]
pub trait ReadModelStore: Send + Sync + fmt::Debug + 'static {
    /// The row `key` of `view`.
    async fn load(&self, view: &str, key: &str) -> Result<Option<serde_json::Value>>;

    /// Every row of `view`, ordered by key.
    async fn load_all(&self, view: &str) -> Result<Vec<(String, serde_json::Value)>>;

    /// As one atomic step: unless `view` has applied revision `revision` of
    /// `stream` (or a later one) already, replaces the row `key` with
    /// `change(stored row)` and records `revision` as applied. Returns
    /// whether it applied. On an error nothing changes.
    async fn apply(
        &self,
        view: &str,
        key: &str,
        stream: &str,
        revision: u64,
        change: RowChange<'_>,
    ) -> Result<bool>;

    /// Deletes every row and applied revision of `view` (before a rebuild).
    async fn clear(&self, view: &str) -> Result<()>;
}

#[derive(Debug, Default)]
struct ViewData {
    rows: BTreeMap<String, serde_json::Value>,
    applied: HashMap<String, u64>,
}

/// Read models in process memory (lost on restart, so a view rebuilds from
/// the start: give its consumer [`StartFrom::Beginning`](super::StartFrom::Beginning)
/// or a store whose checkpoints are in memory too).
#[derive(Debug, Default)]
pub struct MemoryReadModels {
    views: Mutex<HashMap<String, ViewData>>,
}

impl MemoryReadModels {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ReadModelStore for MemoryReadModels {
    async fn load(&self, view: &str, key: &str) -> Result<Option<serde_json::Value>> {
        let views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(views.get(view).and_then(|v| v.rows.get(key)).cloned())
    }

    async fn load_all(&self, view: &str) -> Result<Vec<(String, serde_json::Value)>> {
        let views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(views
            .get(view)
            .map(|v| v.rows.iter().map(|(k, r)| (k.clone(), r.clone())).collect())
            .unwrap_or_default())
    }

    async fn apply(
        &self,
        view: &str,
        key: &str,
        stream: &str,
        revision: u64,
        change: RowChange<'_>,
    ) -> Result<bool> {
        let mut views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
        let data = views.entry(view.to_owned()).or_default();
        if data.applied.get(stream).is_some_and(|&r| r >= revision) {
            return Ok(false);
        }
        let row = change(data.rows.get(key).cloned())?;
        data.rows.insert(key.to_owned(), row);
        data.applied.insert(stream.to_owned(), revision);
        Ok(true)
    }

    async fn clear(&self, view: &str) -> Result<()> {
        self.views
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(view);
        Ok(())
    }
}

/// The query side of a [`View`]: typed reads of its rows. Cheap to clone.
pub struct ReadModel<V: View> {
    store: Arc<dyn ReadModelStore>,
    view: PhantomData<fn() -> V>,
}

impl<V: View> Clone for ReadModel<V> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            view: PhantomData,
        }
    }
}

impl<V: View> fmt::Debug for ReadModel<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadModel")
            .field("view", &V::NAME)
            .field("store", &self.store)
            .finish()
    }
}

impl<V: View> ReadModel<V> {
    /// The read model of `V` in `store`.
    #[must_use]
    pub fn new(store: Arc<dyn ReadModelStore>) -> Self {
        Self {
            store,
            view: PhantomData,
        }
    }

    /// The row `key`.
    ///
    /// # Errors
    /// The store's error, or a stored row that no longer fits [`View::Row`].
    pub async fn get(&self, key: &str) -> Result<Option<V::Row>> {
        self.store
            .load(V::NAME, key)
            .await?
            .map(decode_row::<V>)
            .transpose()
    }

    /// Every row, by key.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub async fn all(&self) -> Result<BTreeMap<String, V::Row>> {
        self.store
            .load_all(V::NAME)
            .await?
            .into_iter()
            .map(|(k, v)| Ok((k, decode_row::<V>(v)?)))
            .collect()
    }
}

fn decode_row<V: View>(value: serde_json::Value) -> Result<V::Row> {
    serde_json::from_value(value)
        .map_err(|e| Error::decode(format!("row of read model `{}`", V::NAME), e))
}

/// Runs a [`View`] as an untyped [`Projection`]: decodes, keys, applies
/// through the [`ReadModelStore`], and clears it on reset.
pub struct ViewProjection<V: View> {
    view: V,
    store: Arc<dyn ReadModelStore>,
    /// The event store's codec: payloads in its content type are decoded
    /// with it (Avro, crypto-shredding), others as JSON.
    codec: Arc<dyn crate::codec::Codec>,
}

impl<V: View> fmt::Debug for ViewProjection<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ViewProjection")
            .field("view", &self.view)
            .field("store", &self.store)
            .finish()
    }
}

impl<V: View> ViewProjection<V> {
    /// `view` keeping its rows in `store`.
    #[must_use]
    pub fn new(view: V, store: Arc<dyn ReadModelStore>) -> Self {
        Self {
            view,
            store,
            codec: Arc::new(crate::codec::JsonCodec),
        }
    }

    /// Decodes payloads stored in `codec`'s content type with it (the event
    /// store's codec: an application registers its views with it).
    #[must_use]
    pub fn with_codec(mut self, codec: Arc<dyn crate::codec::Codec>) -> Self {
        self.codec = codec;
        self
    }

    fn decode(&self, recorded: &RecordedEvent) -> Result<V::Event> {
        let record = &recorded.record;
        if record.content_type != self.codec.content_type() {
            return recorded.decode();
        }
        let payload = self
            .codec
            .decode(&record.event_type, record.schema_version, &record.data)?;
        V::Event::from_payload(&record.event_type, payload).map_err(|e| match e {
            Error::UnknownEventType {
                event_type, target, ..
            } => Error::UnknownEventType {
                event_type,
                version: record.schema_version,
                target,
            },
            other => other,
        })
    }

    /// The query side.
    #[must_use]
    pub fn read_model(&self) -> ReadModel<V> {
        ReadModel::new(self.store.clone())
    }
}

#[async_trait]
impl<V: View> Projection for ViewProjection<V> {
    fn name(&self) -> &str {
        V::NAME
    }

    fn filter(&self) -> Filter {
        Filter::all().event_types(V::Event::event_types().iter().map(|t| t.event_type))
    }

    async fn apply(&self, recorded: &RecordedEvent) -> Result<()> {
        let event = self.decode(recorded)?;
        let Some(key) = self.view.key(&event, recorded) else {
            return Ok(());
        };
        let change = |stored: Option<serde_json::Value>| {
            let mut row = stored.map(decode_row::<V>).transpose()?.unwrap_or_default();
            self.view.update(&mut row, &event, recorded);
            serde_json::to_value(&row)
                .map_err(|e| Error::encode(format!("row of read model `{}`", V::NAME), e))
        };
        self.store
            .apply(
                V::NAME,
                &key,
                recorded.stream_id.as_str(),
                recorded.revision,
                &change,
            )
            .await?;
        Ok(())
    }

    async fn reset(&self) -> Result<()> {
        self.store.clear(V::NAME).await
    }
}
