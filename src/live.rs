//! Settings that a running proxy changes without a restart (SIGHUP): each consumer holds
//! a [`Live`] handle and reads the current value when it begins a piece of work (a
//! session, a management action, a job's round), so a reload reaches the next one and
//! never changes a piece of work half-way. What is reloadable at all is decided in one
//! place, `Config::reloaded`.

use std::sync::Arc;

use arc_swap::ArcSwap;

/// A setting shared by everything that reads it, replaced whole by a reload.
pub type Live<T> = Arc<ArcSwap<T>>;

/// A new handle holding `value`.
pub fn live<T>(value: T) -> Live<T> {
    Arc::new(ArcSwap::from_pointee(value))
}
