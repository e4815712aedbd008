//! Ctrl-C (SIGINT) and SIGTERM. The first asks the run to stop after the batch in flight, which
//! is committed with its progress or not at all; the run then exits 130 / 143 and says how to
//! resume. A second signal ends the process at once: PostgreSQL rolls back the transaction that
//! was open, so the target is as consistent as after a SIGKILL.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

static STOP: std::sync::OnceLock<watch::Sender<i32>> = std::sync::OnceLock::new();

/// How this run is resumed, as the messages of a stopped run say it.
static RESUME_HINT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets how this run is resumed (a run with --truncate is resumed without it).
pub fn set_resume_hint(hint: String) {
    let _ = RESUME_HINT.set(hint);
}

/// "run the same command with --resume to continue", or what was set for this run.
pub fn resume_hint() -> &'static str {
    RESUME_HINT
        .get()
        .map_or("run the same command with --resume to continue", String::as_str)
}

fn sender() -> &'static watch::Sender<i32> {
    STOP.get_or_init(|| watch::channel(0).0)
}

fn name(signo: i32) -> &'static str {
    if signo == libc::SIGTERM { "SIGTERM" } else { "SIGINT" }
}

/// Replaces the default "die at once" of SIGINT and SIGTERM for the rest of the process.
/// Must be called inside the tokio runtime.
pub fn install() {
    for (kind, signo) in [
        (SignalKind::interrupt(), libc::SIGINT),
        (SignalKind::terminate(), libc::SIGTERM),
    ] {
        let Ok(mut stream) = signal(kind) else { continue };
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                let first = sender().send_if_modified(|v| {
                    if *v == 0 {
                        *v = signo;
                        true
                    } else {
                        false
                    }
                });
                if first {
                    crate::telemetry::eprint_line(&format!(
                        "\n{} received: finishing the batch in flight, then stopping (send it again to stop at once)",
                        name(signo)
                    ));
                } else {
                    eprintln!(
                        "\n{} received again: stopping now; the open batch is rolled back by PostgreSQL; {}",
                        name(signo),
                        resume_hint()
                    );
                    std::process::exit(128 + signo);
                }
            }
        });
    }
}

/// The signal that asked the run to stop, if one did.
pub fn requested() -> Option<i32> {
    Some(*sender().borrow()).filter(|s| *s != 0)
}

/// Resolves once a stop was asked for.
pub async fn wait() {
    let mut rx = sender().subscribe();
    let _ = rx.wait_for(|s| *s != 0).await;
}

/// The run stopped because it was asked to.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {} after the last committed batch", name(*.signal))]
pub struct Interrupted {
    pub signal: i32,
}

impl Interrupted {
    /// SIGINT or SIGTERM.
    pub fn name(&self) -> &'static str {
        name(self.signal)
    }

    /// 130 for SIGINT, 143 for SIGTERM, as shells report them.
    pub fn exit_code(&self) -> u8 {
        (128 + self.signal) as u8
    }
}
