//! What the end-to-end tests of the `interproc` program share: a private scratch and
//! runtime directory, and running the program under a watchdog.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The longest one run of the program may take before it is killed and the test fails.
pub const WATCHDOG: Duration = Duration::from_secs(180);

/// A scratch directory, removed at the end, holding a private runtime directory (mode
/// 0700, as `names::runtime_dir` requires) so that a test sees only its own objects.
pub struct Scratch(PathBuf);

impl Scratch {
    /// Creates `/tmp/interproc-<tag>-<pid>-<n>/` and its `rt/`.
    pub fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(interproc::ipc::names::unique_name(tag));
        let private = |p: &Path| {
            std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
                .create(p)
                .unwrap()
        };
        private(&p);
        private(&p.join("rt"));
        Scratch(p)
    }

    /// The runtime directory the program is run with.
    pub fn runtime(&self) -> PathBuf {
        self.0.join("rt")
    }

    /// A path in the scratch directory (outside the runtime directory).
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Everything a run left in the runtime directory: every file and directory but the
    /// records directory itself.
    pub fn leftovers(&self) -> Vec<String> {
        fn walk(dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                }
                out.push(p.display().to_string());
            }
        }
        let mut out = Vec::new();
        walk(&self.runtime(), &mut out);
        out.retain(|p| !p.ends_with("/owners"));
        out
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `interproc <args>`, with the scratch's runtime directory if one is given, no stdin,
/// and stdout and stderr piped.
pub fn command(s: Option<&Scratch>, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_interproc"));
    c.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(s) = s {
        c.env("INTERPROC_RUNTIME_DIR", s.runtime());
    }
    c
}

/// Starts `interproc <args>`.
pub fn spawn(s: Option<&Scratch>, args: &[&str]) -> Child {
    command(s, args).spawn().unwrap()
}

/// Waits for `child` under the watchdog, collecting its output. The output is read on
/// threads, and their end is awaited under the watchdog too: a grandchild that outlived
/// the child would hold the pipes open, and a plain read would then block forever.
pub fn finish(mut child: Child) -> Output {
    fn drain(r: Option<impl std::io::Read + Send + 'static>) -> std::sync::mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            let _ = tx.send(buf);
        });
        rx
    }
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = Instant::now() + WATCHDOG;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("watchdog: interproc did not finish within {WATCHDOG:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let stdout = out.recv_timeout(left).expect("watchdog: something still holds stdout open");
    let stderr = err.recv_timeout(left).expect("watchdog: something still holds stderr open");
    Output { status, stdout, stderr }
}

/// Runs `interproc <args>` to the end, under the watchdog.
pub fn run(s: Option<&Scratch>, args: &[&str]) -> Output {
    finish(spawn(s, args))
}

/// The last line of stdout, parsed as JSON.
pub fn last_json(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {stdout}"))
}
