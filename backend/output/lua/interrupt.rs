//! Stopping a script that does not return: `while true do end` in
//! `write()`, a runaway `init()`, a loop in the main chunk.
//!
//! Lua can only be stopped from inside, by a hook that raises an error. A
//! count hook that is always on costs every script dearly (measured with
//! Debian's lua5.4 on a tight loop: 1.5–2× slower, even with the hook
//! called once per million instructions, since Lua 5.4 then traces every
//! instruction). So the hook is off while scripts behave, and armed only
//! when there is a reason to look:
//!
//! - the supervisor stops the output (delete, edit, restart, shutdown) and
//!   the script has not returned within the grace period ([`Interrupt::stop`]);
//! - the watchdog thread sees that one call (`write`, `flush`, `filter`,
//!   `init`, the main chunk) has been running for a whole watchdog period.
//!   The hook then measures the CPU time the script's thread used, and
//!   raises once one call has used more than `lua.call_cpu_budget_secs`;
//!   otherwise it disarms itself. Time spent waiting (a slow HTTP call in
//!   the built-in cURL) is not CPU time and is never interrupted.
//!
//! Arming from another thread is `lua_sethook` called on a running state,
//! which Lua supports by design: `lua.c` does it from a signal handler to
//! stop a script on Ctrl-C, and the hook fields it writes are the ones Lua
//! documents as safe to change asynchronously (ldebug.c, `lua_sethook`).
//! The state's pointer is only used under [`Interrupt`]'s mutex, which
//! [`Interrupt::detach`] takes before the state is closed.
//!
//! What a hook cannot stop: a script blocked inside a Rust or C function
//! (it is stopped when that returns), and a loop inside a coroutine created
//! while the hook was off (coroutines copy the hook when they are created).

use crate::sync::lock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use mlua::{ffi, HookTriggers, Lua, VmState};

/// How often the watchdog looks at running calls, and so the precision of
/// the CPU budget.
pub const WATCHDOG_PERIOD: Duration = Duration::from_millis(250);
/// Instructions between two hook calls once armed.
const ARMED_COUNT: i32 = 1000;

/// The state a hook can be armed on.
struct Target {
    state: *mut ffi::lua_State,
    /// mlua's hook procedure, which calls our callback.
    hook: ffi::lua_Hook,
}

// SAFETY: the pointer is only dereferenced by `lua_sethook`, under the
// mutex that `detach` takes before the state is closed (see the module
// comment for why a running state may be given a hook from another thread).
unsafe impl Send for Target {}

/// One output's handle on its script, kept across reloads.
pub struct Interrupt {
    target: Mutex<Option<Target>>,
    stopping: AtomicBool,
    /// The current call is being interrupted: the hook raises at every
    /// instruction, so that a `pcall` in the script cannot swallow it.
    interrupting: AtomicBool,
    /// Odd while a call runs; bumped at each start and end, so the watchdog
    /// can tell one long call from many short ones.
    calls: AtomicU64,
    /// What the watchdog saw at its last look.
    seen: AtomicU64,
    /// The thread's CPU time (ns) when the hook first looked at the current
    /// call, and which call that was.
    cpu_base: AtomicU64,
    cpu_base_call: AtomicU64,
    budget: Mutex<Duration>,
    /// `lua.memory_limit_bytes` of the attached state (0: none).
    memory_limit: std::sync::atomic::AtomicUsize,
    /// Why the current call is being interrupted, raised again at every
    /// instruction.
    reason: Mutex<String>,
}

impl Interrupt {
    /// A handle watched by the service's watchdog thread.
    pub fn new() -> Arc<Interrupt> {
        let interrupt = Arc::new(Interrupt {
            target: Mutex::new(None),
            stopping: AtomicBool::new(false),
            interrupting: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            cpu_base: AtomicU64::new(0),
            cpu_base_call: AtomicU64::new(u64::MAX),
            budget: Mutex::new(Duration::ZERO),
            memory_limit: std::sync::atomic::AtomicUsize::new(0),
            reason: Mutex::new(String::new()),
        });
        Watchdog::watch(&interrupt);
        interrupt
    }

    /// Interrupts whatever the script runs now and anything it runs until
    /// it is detached: the output is going away.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.arm(ARMED_COUNT);
    }

    /// Installs the (disarmed) hook in a new state. `budget` is the CPU one
    /// call may use, `memory_limit` the bytes the state may hold; zero
    /// means no limit.
    pub fn attach(
        self: &Arc<Self>,
        lua: &Lua,
        budget: Duration,
        memory_limit: usize,
    ) -> mlua::Result<()> {
        *lock(&self.budget) = budget;
        self.memory_limit.store(memory_limit, Ordering::Relaxed);
        let this = Arc::downgrade(self);
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(ARMED_COUNT as u32),
            move |lua, _| match this.upgrade() {
                Some(interrupt) => interrupt.check(lua),
                None => Ok(VmState::Continue),
            },
        )?;
        let mut target = None;
        // SAFETY: exec_raw hands the state's own pointer; lua_gethook and
        // lua_sethook only read and write its hook fields.
        unsafe {
            lua.exec_raw::<()>((), |state| {
                if let Some(hook) = ffi::lua_gethook(state) {
                    target = Some(Target { state, hook });
                }
                ffi::lua_sethook(state, None, 0, 0);
            })?;
        }
        *lock(&self.target) = target;
        if self.stopping.load(Ordering::Acquire) {
            self.arm(ARMED_COUNT);
        }
        Ok(())
    }

    /// Forgets the state, which is about to be closed.
    pub fn detach(&self) {
        *lock(&self.target) = None;
    }

    /// Around every call into the script: two relaxed increments, so that
    /// watching costs the hot path nothing measurable.
    pub fn enter(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    pub fn leave(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        // The interrupted call is over; a stopped script stays interrupted.
        if self.interrupting.load(Ordering::Relaxed) && !self.stopping.load(Ordering::Acquire) {
            self.interrupting.store(false, Ordering::Relaxed);
            self.disarm();
        }
    }

    /// The hook is called every `count` instructions from now on.
    fn arm(&self, count: i32) {
        if let Some(target) = lock(&self.target).as_ref() {
            // SAFETY: see `Target`.
            unsafe { ffi::lua_sethook(target.state, Some(target.hook), ffi::LUA_MASKCOUNT, count) };
        }
    }

    fn disarm(&self) {
        if let Some(target) = lock(&self.target).as_ref() {
            // SAFETY: called on the state's own thread.
            unsafe { ffi::lua_sethook(target.state, None, 0, 0) };
        }
    }

    /// Raises `message` in the script now and at every instruction it
    /// runs until the call returns: one `pcall` level is unwound per
    /// instruction, so no loop of the script can catch it for good.
    fn interrupt(&self, message: String) -> mlua::Result<VmState> {
        if !self.interrupting.swap(true, Ordering::Relaxed) {
            *lock(&self.reason) = message.clone();
            self.arm(1);
        }
        Err(mlua::Error::runtime(message))
    }

    /// The hook, on the script's thread.
    fn check(&self, lua: &Lua) -> mlua::Result<VmState> {
        if self.stopping.load(Ordering::Acquire) {
            return self.interrupt("interrupted: the output is being stopped".into());
        }
        if self.interrupting.load(Ordering::Relaxed) {
            let reason = lock(&self.reason).clone();
            return self.interrupt(reason);
        }
        let limit = self.memory_limit.load(Ordering::Relaxed);
        if limit > 0 && lua.used_memory() > limit {
            return self.interrupt(memory_message(limit));
        }
        let budget = *lock(&self.budget);
        let call = self.calls.load(Ordering::Relaxed);
        if budget.is_zero() || !in_call(call) {
            self.disarm();
            return Ok(VmState::Continue);
        }
        let now = thread_cpu_ns();
        if self.cpu_base_call.swap(call, Ordering::Relaxed) != call {
            // The watchdog saw this call run for a whole period: count
            // that period as used, to within its length.
            let period = u64::try_from(WATCHDOG_PERIOD.as_nanos()).unwrap_or(u64::MAX);
            self.cpu_base
                .store(now.saturating_sub(period), Ordering::Relaxed);
        }
        let used = Duration::from_nanos(now.saturating_sub(self.cpu_base.load(Ordering::Relaxed)));
        if used > budget {
            return self.interrupt(format!(
                "interrupted: one call used more than {} s of CPU (lua.call_cpu_budget_secs)",
                budget.as_secs_f64()
            ));
        }
        self.disarm();
        Ok(VmState::Continue)
    }
}

/// What a script that holds more than its memory limit is told.
pub fn memory_message(limit: usize) -> String {
    format!(
        "not enough memory: the script holds more than its memory limit of {} MiB (lua.memory_limit_bytes)",
        limit / (1024 * 1024)
    )
}

/// Whether a count of [`Interrupt::calls`] means a call is running.
fn in_call(calls: u64) -> bool {
    calls & 1 == 1
}

/// CPU time used by the calling thread.
fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0)
}

/// The one thread that looks at every script's calls.
struct Watchdog {
    watched: Mutex<Vec<Weak<Interrupt>>>,
}

static WATCHDOG: LazyLock<Watchdog> = LazyLock::new(|| {
    let spawned = std::thread::Builder::new()
        .name("lua-watchdog".into())
        .spawn(|| loop {
            std::thread::sleep(WATCHDOG_PERIOD);
            WATCHDOG.look();
        });
    if let Err(e) = spawned {
        tracing::error!(
            "cannot start the Lua watchdog: scripts will not be held to their CPU budget: {e}"
        );
    }
    Watchdog {
        watched: Mutex::new(Vec::new()),
    }
});

impl Watchdog {
    fn watch(interrupt: &Arc<Interrupt>) {
        lock(&WATCHDOG.watched).push(Arc::downgrade(interrupt));
    }

    fn look(&self) {
        let mut watched = lock(&self.watched);
        watched.retain(|weak| {
            let Some(interrupt) = weak.upgrade() else {
                return false;
            };
            let calls = interrupt.calls.load(Ordering::Relaxed);
            let before = interrupt.seen.swap(calls, Ordering::Relaxed);
            // The same call as a period ago, still running.
            if in_call(calls) && calls == before && !interrupt.interrupting.load(Ordering::Relaxed)
            {
                interrupt.arm(ARMED_COUNT);
            }
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn looping(interrupt: &Arc<Interrupt>, budget: Duration) -> mlua::Result<()> {
        // SAFETY: the runtime's own kind of state.
        let lua = unsafe { Lua::unsafe_new() };
        interrupt.attach(&lua, budget, 0)?;
        interrupt.enter();
        let result = lua.load("while true do end").exec();
        interrupt.leave();
        interrupt.detach();
        result
    }

    #[test]
    fn a_loop_past_its_budget_is_interrupted() {
        let interrupt = Interrupt::new();
        let error = looping(&interrupt, Duration::from_millis(200)).unwrap_err();
        assert!(
            error.to_string().contains("used more than 0.2 s of CPU"),
            "{error}"
        );
    }

    #[test]
    fn a_stopped_loop_is_interrupted_whatever_its_budget() {
        let interrupt = Interrupt::new();
        let stopper = Arc::clone(&interrupt);
        let stop = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            stopper.stop();
        });
        let error = looping(&interrupt, Duration::ZERO).unwrap_err();
        assert!(
            error.to_string().contains("the output is being stopped"),
            "{error}"
        );
        stop.join().unwrap();
    }
}
