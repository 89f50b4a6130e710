//! `--wait` on a real terminal: the binary runs in a pseudo-terminal, its output goes
//! through a terminal emulator (vt100), and the final screen is checked: the progress was
//! drawn and redrawn in place, and ends cleanly (finished bars, the outcome table, cursor
//! at the start of a line and visible). Ctrl-C stops the waiting, not the operations.

mod support;

use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use std::io::Write as _;
use std::num::NonZeroU16;
use std::sync::mpsc;
use support::Env;

const ROWS: u16 = 40;
const COLS: u16 = 110;

/// A `dcbackup` running in a pty.
struct InPty {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    /// Typing on its terminal.
    writer: Box<dyn std::io::Write + Send>,
    /// Everything it prints, in chunks, until it exits.
    output: mpsc::Receiver<Vec<u8>>,
}

/// `dcbackup` in a new pty, with the same environment `Env::command` gives.
fn spawn_in_pty(env: &Env, args: &[&str], extra_env: &[(&str, &str)]) -> InPty {
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: ROWS,
            cols: COLS,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("a pty");
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_dcbackup"));
    cmd.args(args);
    for var in [
        "OS_AUTH_TOKEN",
        "DCBACKUP_TOKEN_FILE",
        "DCBACKUP_PROFILE",
        "DCBACKUP_CONFIG",
        "NO_COLOR",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("TERM", "xterm-256color");
    cmd.env("XDG_CONFIG_HOME", &env.config_home);
    cmd.env("DCBACKUP_URL", env.server.url());
    cmd.env("DCBACKUP_TOKEN", &env.lab.stack.admin_token);
    for (key, value) in extra_env {
        cmd.env(key, value);
    }
    let child = pair
        .slave
        .spawn_command(cmd)
        .expect("dcbackup starts in the pty");
    // Only the child holds the terminal now: its exit ends the output.
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().expect("pty reader");
    let writer = pair.master.take_writer().expect("pty writer");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Keep the master open until the reader is done.
        let _master = pair.master;
        let mut buf = [0u8; 4096];
        // A read error (EIO) is how Linux says the other side closed.
        while let Ok(n) = std::io::Read::read(&mut reader, &mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    InPty {
        child,
        writer,
        output: rx,
    }
}

fn screen(bytes: &[u8]) -> vt100::Parser {
    let mut parser = vt100::Parser::new(
        NonZeroU16::new(ROWS).unwrap(),
        NonZeroU16::new(COLS).unwrap(),
        0,
    );
    parser.process(bytes);
    parser
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_draws_progress_on_a_terminal_and_ends_cleanly() {
    let env = Env::new().await;
    env.run(["subcloud-group", "add", "--name", "edge"])
        .await
        .expect(0);
    let _a = env.subcloud_with_agent("sc-a", "edge").await;
    let _b = env.subcloud_with_agent("sc-b", "edge").await;

    let InPty {
        mut child, output, ..
    } = spawn_in_pty(
        &env,
        &[
            "subcloud-backup",
            "create",
            "--group",
            "edge",
            "--wait",
            "--poll-interval",
            "200ms",
        ],
        &[],
    );
    let waiting = tokio::task::spawn_blocking(move || child.wait());
    let status = env
        .with_worker(waiting)
        .await
        .expect("waiting")
        .expect("dcbackup exits");
    let bytes: Vec<u8> = output.iter().flatten().collect();
    let raw = String::from_utf8_lossy(&bytes);
    assert_eq!(status.exit_code(), 0, "{raw}");

    // The bars were drawn (their first state) and redrawn in place, with colour.
    assert!(raw.contains("validating"), "{raw}");
    assert!(raw.contains("\x1b["), "escape codes on a terminal: {raw}");
    let parser = screen(&bytes);
    let shown = parser.screen().contents();
    assert!(
        !shown.contains("validating"),
        "progress lines were redrawn: {shown}"
    );
    let line = |needle: &str| {
        shown
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} on the screen:\n{shown}"))
            .to_owned()
    };
    assert!(line("sc-a ").contains("✔ complete-central"), "{shown}");
    assert!(line("sc-b ").contains("✔ complete-central"), "{shown}");
    assert!(
        line("group edge").contains("2/2 done (0 failed, 0 running)"),
        "{shown}"
    );
    // The outcome table follows, then the prompt would: cursor on a fresh line, visible.
    assert!(line("│ sc-a").contains("succeeded"), "{shown}");
    let (_, column) = parser.screen().cursor_position();
    assert_eq!(column, 0, "output ends with a complete line:\n{shown}");
    assert!(!parser.screen().hide_cursor(), "the cursor is shown again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_waiting_but_not_the_operation() {
    let env = Env::new().await;
    let _a = env.subcloud_with_agent("sc-a", "Default").await;
    // No worker runs: the operation stays in its first state.
    let InPty {
        mut child,
        mut writer,
        output,
    } = spawn_in_pty(
        &env,
        &[
            "subcloud-backup",
            "create",
            "--subcloud",
            "sc-a",
            "--wait",
            "--poll-interval",
            "100ms",
        ],
        &[],
    );
    let mut bytes = Vec::new();
    let drawn = tokio::task::spawn_blocking(move || {
        for chunk in output.iter() {
            bytes.extend(chunk);
            if String::from_utf8_lossy(&bytes).contains("validating") {
                return (bytes, output);
            }
        }
        panic!(
            "the progress never showed: {}",
            String::from_utf8_lossy(&bytes)
        );
    });
    let (mut bytes, output) = drawn.await.unwrap();
    // The terminal's interrupt character: SIGINT to the foreground process.
    writer.write_all(b"\x03").unwrap();
    writer.flush().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    bytes.extend(output.iter().flatten());
    let raw = String::from_utf8_lossy(&bytes);
    assert_eq!(status.exit_code(), 130, "{raw}");
    assert!(
        raw.contains("stopped waiting; the operations go on"),
        "{raw}"
    );
    let shown = screen(&bytes).screen().contents();
    assert!(
        shown.contains("validating (interrupted; still running)"),
        "{shown}"
    );
    // The operation still holds the subcloud's slot.
    let sc = env
        .run(["subcloud", "show", "sc-a", "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(sc["operation"]["kind"], "create", "{sc}");
}

/// Everything a command prints on a terminal, once it has exited with `code`.
async fn on_terminal(env: &Env, args: &[&str], extra_env: &[(&str, &str)], code: u32) -> String {
    let InPty {
        mut child, output, ..
    } = spawn_in_pty(env, args, extra_env);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let bytes: Vec<u8> = output.iter().flatten().collect();
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    assert_eq!(status.exit_code(), code, "{raw}");
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_coloured_on_a_terminal_unless_no_color() {
    let env = Env::new().await;
    let _a = env.subcloud_with_agent("sc-a", "Default").await;
    let coloured = on_terminal(&env, &["status"], &[], 0).await;
    // SGR sequences (colours) around the counts; the table itself is there too.
    assert!(coloured.contains("\x1b[38;5;"), "{coloured:?}");
    assert!(coloured.contains("Default"), "{coloured:?}");
    let plain = on_terminal(&env, &["status"], &[("NO_COLOR", "1")], 0).await;
    assert!(!plain.contains('\x1b'), "{plain:?}");
    assert!(plain.contains("Default"), "{plain:?}");
    // Piped: never colour.
    let piped = env.run(["status"]).await.expect(0);
    assert!(!piped.stdout.contains('\x1b') && piped.stdout.contains("Default"));
}
