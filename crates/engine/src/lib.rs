//! The migration engine: folder plan, message plan, the streaming pipelined copy,
//! and the proof (`verify`). It drives connectors through the [`Source`] and
//! [`Destination`] interfaces and remembers everything in the ledger.

pub mod check;
pub mod connector;
pub mod connectors;
pub mod content;
mod copy;
pub mod dates;
pub mod folders;
pub mod identity;
pub mod migrate;
pub mod plan;
pub mod progress;
pub mod report;
mod session;
pub mod verify;

pub use check::{CheckReport, check};
pub use connector::{Connector, Destination, Side, SideError, Source};
pub use connectors::{Account, Admin, WebAuth};
pub use folders::FolderRules;
// How to connect, named here for the programs that configure a pass.
pub use mailmove_net::{AdminForm, CompressMode, ConnectOptions, Remedy, TlsOptions};
pub use migrate::{FatalKind, MigrateSettings, migrate};
pub use plan::{MessageFilter, PassKind};
pub use progress::{Event, Progress, Silent};
pub use report::Report;
pub use verify::verify;
