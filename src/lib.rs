//! # strata
//!
//! An embedded, event-sourced storage engine. Every mutation is appended as an immutable
//! event to a segmented, append-only log of CRC-checked, zstd-compressed frames; an entity's
//! state is the projection of its events. Nothing is ever erased: a delete is an event, and
//! so is an undo.
//!
//! ```
//! use strata::{EventQuery, NewEvent, Options, Store};
//! use serde_json::json;
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path(), Options::default())?;
//! store.append(NewEvent::create("Contact", "contact_1", json!({"name": "Alice", "stage": "Lead"})))?;
//! store.append(NewEvent::update("contact_1", json!({"stage": "Qualified"})).verb("Qualified"))?;
//! store.append(NewEvent::delete("contact_1"))?;
//! assert!(store.get("contact_1")?.unwrap().deleted);
//! assert_eq!(store.history("contact_1")?.len(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The on-disk format is specified in `format-spec.md` at the root of the repository.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod checkpoint;
mod dictionary;
mod entity;
mod entity_index;
mod error;
mod event;
mod event_query;
mod fault_storage;
mod format;
mod frame;
#[doc(hidden)]
pub mod fuzzing;
mod group_commit;
pub mod inspect;
mod merge_patch;
mod options;
mod os;
mod projection;
mod query;
mod read;
mod record;
mod recovery;
mod rollback;
mod segment;
mod segment_set;
mod storage;
mod store;
mod timestamp;
mod undo;
mod writer;

pub use entity::Entity;
pub use error::{Error, Result};
pub use event::{Event, NewEvent, StoreId};
pub use event_query::EventQuery;
pub use fault_storage::{FaultMode, FaultOp, FaultStorage};
pub use merge_patch::{diff_patch, merge_patch};
pub use options::{Durability, Options, Recovery};
pub use query::Query;
pub use rollback::RollbackOutcome;
pub use storage::{FsStorage, Storage, StorageFile};
pub use store::{StateAt, Store, StoreStats, Validator};
pub use timestamp::{AsTimestamp, Timestamp};
pub use undo::UndoCheck;
