//! What every layer of brokerstream shares and no layer owns: the rule for
//! poisoned std locks (`sync`), handing freed memory back to the system
//! when idle (`memory`), peer allow-lists (`net`, for the BBDO listeners
//! and the HTTP server) and log lines that repeat at most once per
//! interval (`throttle`). The service re-exports them under these names.

pub mod memory;
pub mod net;
pub mod sync;
pub mod throttle;
