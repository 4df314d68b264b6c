//! Ctrl-C and SIGTERM: what slimd does when it is asked to stop.
//!
//! The first signal is recorded and wakes every waiter; work in progress sees it through
//! [`check`] (CPU-bound loops, which run off the async workers) or [`cancellable`] (awaits),
//! unwinds, and cleans up after itself as any error does. A second signal exits at once.
use std::{
    future::Future,
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicI32, Ordering},
    },
};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
};

/// The signal that stopped slimd.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {}", signal_name(*.0))]
pub struct Interrupted(pub i32);

impl Interrupted {
    /// The shell's convention: 128 plus the signal number.
    pub fn exit_code(self) -> u8 {
        (128 + self.0).clamp(0, 255) as u8
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

struct State {
    /// The signal received and not yet acknowledged (0: none).
    pending: AtomicI32,
    wake: watch::Sender<i32>,
    /// What slimd is doing, for the line that says what was interrupted.
    phase: Mutex<String>,
}

static STATE: OnceLock<State> = OnceLock::new();

fn state() -> &'static State {
    STATE.get_or_init(|| State {
        pending: AtomicI32::new(0),
        wake: watch::channel(0).0,
        phase: Mutex::new(String::new()),
    })
}

/// Listens for SIGINT and SIGTERM. Call once, inside the async runtime.
pub fn install() -> std::io::Result<()> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        loop {
            let signal = tokio::select! {
                _ = int.recv() => libc::SIGINT,
                _ = term.recv() => libc::SIGTERM,
            };
            let state = state();
            if state
                .pending
                .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                eprintln!("slimd: {}, again: exiting now", Interrupted(signal));
                std::process::exit(i32::from(Interrupted(signal).exit_code()));
            }
            state.wake.send_replace(signal);
        }
    });
    Ok(())
}

/// The signal received, if one was and it was not acknowledged.
pub fn received() -> Option<Interrupted> {
    match state().pending.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(Interrupted(signal)),
    }
}

/// Err once a signal has been received: for loops that run long.
pub fn check() -> Result<(), Interrupted> {
    received().map_or(Ok(()), Err)
}

/// The same, as an I/O error, for readers and writers.
pub fn check_io() -> std::io::Result<()> {
    check().map_err(std::io::Error::other)
}

/// Completes when a signal is received (at once if one was).
pub async fn interrupted() -> Interrupted {
    let mut rx = state().wake.subscribe();
    loop {
        if let Some(i) = received() {
            return i;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// `work`, or `Interrupted` as soon as a signal is received (`work` is dropped, and with it
/// whatever it holds).
pub async fn cancellable<T, E: From<Interrupted>>(
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    tokio::select! {
        result = work => result,
        i = interrupted() => Err(i.into()),
    }
}

/// Takes a received signal as an answer rather than an abort (`observe` ends its observation
/// on Ctrl-C and goes on to write its report); a later signal interrupts as usual.
pub fn acknowledge() {
    let state = state();
    state.pending.store(0, Ordering::SeqCst);
    state.wake.send_replace(0);
}

/// Runs CPU-bound or blocking work off the async workers, so that signals, timers and other
/// tasks go on meanwhile. `work` should call [`check`] in its long loops. (Outside a
/// multi-threaded runtime it simply runs.)
pub fn blocking<T>(work: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

pub fn set_phase(phase: &str) {
    if let Ok(mut p) = state().phase.lock() {
        phase.clone_into(&mut p);
    }
}

pub fn phase() -> String {
    state().phase.lock().map(|p| p.clone()).unwrap_or_default()
}

/// A reader that stops with an error once a signal is received: long copies end promptly.
pub struct Checked<R>(pub R);

impl<R: std::io::Read> std::io::Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        check_io()?;
        self.0.read(buf)
    }
}
