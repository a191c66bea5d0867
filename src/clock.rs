//! The crate's one clock. Policy time is whole seconds (as the store keeps it); rules never
//! read it themselves — it is read here, at the edge, and passed in.

use jiff::Timestamp;

/// Now, to the whole second.
pub fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH)
}
