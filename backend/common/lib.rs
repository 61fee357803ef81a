//! What every layer of brokerstream shares and no layer owns: the rule for
//! poisoned std locks (`sync`) and handing freed memory back to the system
//! when idle (`memory`). `brokerstream::sync` and `brokerstream::memory`
//! re-export them.

pub mod memory;
pub mod sync;
