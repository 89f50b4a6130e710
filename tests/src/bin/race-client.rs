//! A separate OS process in the slot race: reads a `race::Spec` (one JSON line) on stdin,
//! builds its own handler state, says it is ready on stdout and waits for the go line on
//! stdin (`race::barrier`), then sends every request at once and prints the outcomes as JSON.

use dcbackup_tests::race::{barrier, fire, Spec};
use dcbackup_tests::Stack;
use std::io::BufRead;

#[tokio::main]
async fn main() {
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    stdin
        .read_line(&mut line)
        .expect("reading the spec from stdin");
    let spec: Spec = serde_json::from_str(&line).expect("a race spec on stdin");
    let stack = Stack::attach(&spec.prefix).await;
    barrier(&mut stdin, &mut std::io::stdout().lock());
    let outcomes = fire(&stack, &spec.requests).await;
    println!(
        "{}",
        serde_json::to_string(&outcomes).expect("outcomes serialize")
    );
}
