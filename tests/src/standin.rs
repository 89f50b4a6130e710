//! An agent stand-in for the calls that go wrong on the wire: a proxy on 127.0.0.1 in front
//! of a real agent that passes every request through, one at a time, except the job starts
//! (`POST`) it is told to hold. A held start keeps its connection open and never answers, as
//! an agent (or a network) that stalls does.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What the stand-in does with a job start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Nothing: every request passes.
    Nothing,
    /// The first start reaches the agent, which starts the job; its answer is withheld.
    FirstAnswer,
    /// Every start is held before it reaches the agent and handed to the test
    /// (`StandIn::held`), which may forward it later (`StandIn::forward`).
    Starts,
}

pub struct StandIn {
    /// The address the worker is given as the subcloud's agent-url.
    pub url: String,
    agent: String,
    /// How many job starts arrived.
    pub starts: Arc<AtomicUsize>,
    dark: Arc<AtomicBool>,
    held: mpsc::UnboundedReceiver<Vec<u8>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl StandIn {
    /// A stand-in for the agent at `agent_url` (`http://host:port`).
    pub async fn new(agent_url: &str, hold: Hold) -> StandIn {
        let agent = agent_url.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("stand-in port");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("stand-in address")
        );
        let starts = Arc::new(AtomicUsize::new(0));
        let dark = Arc::new(AtomicBool::new(false));
        let (sender, held) = mpsc::unbounded_channel();
        let server = tokio::spawn({
            let agent = agent.clone();
            let starts = starts.clone();
            let dark = dark.clone();
            async move {
                // Held connections stay open for the stand-in's life.
                let mut silent = Vec::new();
                let (silenced, mut to_silence) = mpsc::unbounded_channel::<TcpStream>();
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((client, _)) = accepted else { return };
                            tokio::spawn(serve(
                                client,
                                agent.clone(),
                                hold,
                                Counters { starts: starts.clone(), dark: dark.clone() },
                                sender.clone(),
                                silenced.clone(),
                            ));
                        }
                        Some(stream) = to_silence.recv() => silent.push(stream),
                    }
                }
            }
        });
        StandIn {
            url,
            agent,
            starts,
            dark,
            held,
            server,
        }
    }

    /// From now on every request's connection is closed unanswered, as by an agent that
    /// went away.
    pub fn go_dark(&self) {
        self.dark.store(true, Ordering::SeqCst);
    }

    /// The next start held by `Hold::Starts`, as the raw HTTP request.
    pub async fn held(&mut self) -> Vec<u8> {
        self.held.recv().await.expect("the stand-in is running")
    }

    /// Sends a raw request to the agent; returns its raw answer.
    pub async fn forward(&self, request: &[u8]) -> Vec<u8> {
        exchange(&self.agent, request).await
    }
}

struct Counters {
    starts: Arc<AtomicUsize>,
    dark: Arc<AtomicBool>,
}

async fn serve(
    mut client: TcpStream,
    agent: String,
    hold: Hold,
    counters: Counters,
    held: mpsc::UnboundedSender<Vec<u8>>,
    silenced: mpsc::UnboundedSender<TcpStream>,
) {
    while let Some(request) = read_message(&mut client).await {
        if counters.dark.load(Ordering::SeqCst) {
            return;
        }
        if request.starts_with(b"POST ") {
            let first = counters.starts.fetch_add(1, Ordering::SeqCst) == 0;
            match hold {
                Hold::FirstAnswer if first => {
                    exchange(&agent, &request).await;
                    let _ = silenced.send(client);
                    return;
                }
                Hold::Starts => {
                    let _ = held.send(request);
                    let _ = silenced.send(client);
                    return;
                }
                Hold::FirstAnswer | Hold::Nothing => {}
            }
        }
        let answer = exchange(&agent, &request).await;
        if client.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// One request to the agent on its own connection; its whole answer.
async fn exchange(agent: &str, request: &[u8]) -> Vec<u8> {
    let mut upstream = TcpStream::connect(agent).await.expect("the agent listens");
    upstream.write_all(request).await.expect("request sent");
    read_message(&mut upstream)
        .await
        .expect("the agent answers")
}

/// One HTTP/1.1 message (head and a `Content-Length` body); `None` at end of stream.
async fn read_message(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut message = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = message.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        message.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&message[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().expect("a Content-Length"))
        .unwrap_or(0);
    while message.len() < head_end + length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        message.extend_from_slice(&chunk[..read]);
    }
    Some(message)
}
