//! What the hostile-input tests share.

pub mod workbooks;
