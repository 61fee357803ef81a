//! The one rule for the service's std locks, written once.
//!
//! A poisoned lock (its holder panicked) is taken as it is: every lock of
//! the service guards data that each change leaves consistent (one
//! assignment, one insert or remove, counts recomputed when in doubt), so
//! the panic of one holder is no reason to make the data unusable for the
//! others. A new lock that cannot promise this must not use these helpers
//! and says why.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn read<T: ?Sized>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

pub fn write<T: ?Sized>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}
