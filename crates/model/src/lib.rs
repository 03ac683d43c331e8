//! The words every other crate shares: where a mailbox lives, how to log in to it,
//! and how a message is recognised. Nothing here does I/O.

mod endpoint;
pub mod mutf7;
mod pass;
mod secret;
mod size;
mod text;
mod trial;

pub use endpoint::{EWS_PATH, Endpoint, EndpointError, Kind, Security};
pub use pass::PassKind;
pub use secret::Secret;
pub use size::human_size;
pub use text::{SERVER_TEXT_LIMIT, server_text};
pub use trial::{TrialReport, TrialSide};
